/* ReLU(max-pool 2x2, stride 2), or the max-pool alone (relu = 0), on a channels-last
 * (N, H, W, C) tensor, forward and backward.
 *
 * One pass each way instead of PyTorch's three (pool, ReLU, and a backward that zero-fills
 * the whole input gradient and then scatters into it through int64 indices). The forward
 * keeps a one-byte code per output element: which of the window's four inputs was the
 * maximum (0..3, row-major), or NONE where the ReLU passes no gradient.
 *
 * Exactly PyTorch's semantics, so values and gradients are bit-identical:
 *   - the first maximum in row-major window order wins; a NaN wins over anything and a
 *     later NaN over an earlier one (max_pool2d's `val > max || isnan(val)`);
 *   - ReLU is clamp_min(m, 0): -0.0 and NaN pass through, and its gradient is zero where
 *     its output is <= 0 (threshold_backward);
 *   - odd H or W: the last row or column is not pooled (floor mode) and gets zero gradient;
 *   - without the ReLU (the speed-run net pools before its BatchNorm) every output keeps its
 *     window's maximum and routes its gradient there, as max_pool2d does.
 * bf16 tensors are handled as their 16-bit patterns, compared as floats (exact widening).
 *
 * Threads: an OpenMP loop over output rows. Loaded into a process that has PyTorch, the
 * library resolves libgomp.so.1 to PyTorch's copy, so it shares PyTorch's thread pool
 * instead of competing with it for the cores.
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define NONE 4

INLINE int takes(float v, float m) { return v > m || v != v; }

/* One output pixel: its window's inputs start at x00 (row-major: x00, x00 + c, x10,
 * x10 + c). */
INLINE void pool_pixel(const void *restrict x, long i00, long i10, void *restrict y, long o,
                       uint8_t *restrict cd, const long c, const int bf16, const int relu) {
    const long i01 = i00 + c, i11 = i10 + c;
    for (long k = 0; k < c; k++) {
        if (bf16) {
            const uint16_t *xs = (const uint16_t *)x;
            uint16_t best = xs[i00 + k];
            float m = widen(best);
            uint8_t at = 0;
            float v = widen(xs[i01 + k]);
            if (takes(v, m)) { m = v; best = xs[i01 + k]; at = 1; }
            v = widen(xs[i10 + k]);
            if (takes(v, m)) { m = v; best = xs[i10 + k]; at = 2; }
            v = widen(xs[i11 + k]);
            if (takes(v, m)) { m = v; best = xs[i11 + k]; at = 3; }
            ((uint16_t *)y)[o + k] = relu && m < 0.0f ? 0 : best;
            cd[k] = relu && m <= 0.0f ? NONE : at;
        } else {
            const float *xs = (const float *)x;
            float m = xs[i00 + k];
            uint8_t at = 0;
            if (takes(xs[i01 + k], m)) { m = xs[i01 + k]; at = 1; }
            if (takes(xs[i10 + k], m)) { m = xs[i10 + k]; at = 2; }
            if (takes(xs[i11 + k], m)) { m = xs[i11 + k]; at = 3; }
            ((float *)y)[o + k] = relu && m < 0.0f ? 0.0f : m;
            cd[k] = relu && m <= 0.0f ? NONE : at;
        }
    }
}

void pool_relu_forward(const void *x, void *y, uint8_t *code, long n, long h, long w, long c,
                       int is_bf16, int relu, int threads) {
    const long ho = h / 2, wo = w / 2, rows = n * ho;
    if (threads < 1 || rows < threads) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        const long b = r / ho, oh = r % ho;
        for (long ow = 0; ow < wo; ow++) {
            const long i00 = ((b * h + 2 * oh) * w + 2 * ow) * c, i10 = i00 + w * c;
            const long o = ((b * ho + oh) * wo + ow) * c;
#define POOL(C)                                                                              \
    if (is_bf16 && relu) pool_pixel(x, i00, i10, y, o, code + o, C, 1, 1);                   \
    else if (is_bf16) pool_pixel(x, i00, i10, y, o, code + o, C, 1, 0);                      \
    else if (relu) pool_pixel(x, i00, i10, y, o, code + o, C, 0, 1);                         \
    else pool_pixel(x, i00, i10, y, o, code + o, C, 0, 0)
            WITH_CHANNELS(c, POOL)
#undef POOL
        }
    }
}

/* One input pixel's gradient: the output's where this pixel was its window's `want`-th
 * input and the maximum, else zero. */
INLINE void unpool_pixel(const uint8_t *restrict cd, const void *restrict grad, long o,
                         void *restrict dst, uint8_t want, const long c, const int bf16) {
    for (long k = 0; k < c; k++) {
        if (bf16) {
            const uint16_t g = ((const uint16_t *)grad)[o + k];
            /* 0x8000 is -0.0: PyTorch adds the gradient onto a zero fill, giving +0.0 */
            ((uint16_t *)dst)[k] = cd[k] == want && g != 0x8000 ? g : 0;
        } else {
            const float g = ((const float *)grad)[o + k];
            ((float *)dst)[k] = cd[k] == want ? g + 0.0f : 0.0f;
        }
    }
}

/* Writes every element of grad_in (no separate zero fill). */
void pool_relu_backward(const uint8_t *code, const void *grad, void *grad_in, long n, long h,
                        long w, long c, int is_bf16, int threads) {
    const long ho = h / 2, wo = w / 2, rows = n * h;
    const long size = is_bf16 ? 2 : 4;
    if (threads < 1 || rows < threads) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        const long b = r / h, ih = r % h, oh = ih / 2;
        char *row = (char *)grad_in + r * w * c * size;
        if (oh >= ho) {
            memset(row, 0, w * c * size);
            continue;
        }
        for (long iw = 0; iw < w; iw++) {
            const long ow = iw / 2;
            char *dst = row + iw * c * size;
            if (ow >= wo) {
                memset(dst, 0, c * size);
                continue;
            }
            const uint8_t want = (uint8_t)(2 * (ih & 1) + (iw & 1));
            const long o = ((b * ho + oh) * wo + ow) * c;
#define UNPOOL(C)                                                                            \
    if (is_bf16) unpool_pixel(code + o, grad, o, dst, want, C, 1);                           \
    else unpool_pixel(code + o, grad, o, dst, want, C, 0)
            WITH_CHANNELS(c, UNPOOL)
#undef UNPOOL
        }
    }
}
