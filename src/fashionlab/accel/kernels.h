/* Helpers shared by fashionlab's kernels (pool_relu.c, batchnorm.c). Part of each kernel's
 * build key (build.py hashes every header here), so a change rebuilds them. */
#ifndef FASHIONLAB_KERNELS_H
#define FASHIONLAB_KERNELS_H

#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <string.h>

/* The per-element loops are written once and specialised by always-inlined calls with
 * constant arguments (dtype, ReLU, channel count), so each copy is branch-free and the
 * compiler vectorises it. */
#define INLINE static inline __attribute__((always_inline))

/* Calls CALL(c) with c a compile-time constant for the common channel counts: the per-pixel
 * loop over channels is then fully unrolled, with no per-pixel setup, which is most of the
 * cost when a pixel is only 16-128 values. */
#define WITH_CHANNELS(c, CALL)                                                               \
    switch (c) {                                                                             \
    case 16: CALL(16); break;                                                                \
    case 32: CALL(32); break;                                                                \
    case 64: CALL(64); break;                                                                \
    case 128: CALL(128); break;                                                              \
    default: CALL(c); break;                                                                 \
    }

/* bf16 bits -> float (exact). */
INLINE float widen(uint16_t bits) {
    uint32_t u = (uint32_t)bits << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Chunk t of [0, n) cut into `parts` chunks of ceil(n / parts), as at::parallel_for cuts. */
static inline void chunk_bounds(long n, long parts, long t, long *begin, long *end) {
    const long chunk = (n + parts - 1) / parts;
    *begin = t * chunk < n ? t * chunk : n;
    *end = *begin + chunk < n ? *begin + chunk : n;
}

/* Inside an OpenMP parallel region: this thread's share of [0, n). */
static inline void thread_share(long n, long *begin, long *end) {
#ifdef _OPENMP
    chunk_bounds(n, omp_get_num_threads(), omp_get_thread_num(), begin, end);
#else
    *begin = 0, *end = n;
#endif
}

#endif
