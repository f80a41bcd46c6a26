/* Tensor.bernoulli_(p) for PyTorch's default CPU generator, drawing exactly what PyTorch draws.
 *
 * Why: dropout's mask is `empty_like(x).bernoulli_(1 - p)`, and PyTorch fills it one element
 * at a time through a locked, type-dispatched call per draw (about 6 ns an element here): on
 * S0-M2 that was a fifth of a bf16 training step. This file runs the same Mersenne Twister
 * over the same state in tight loops, so the mask, the values that follow from it and the
 * generator's state afterwards are bit-identical to PyTorch's (tests/test_accel.py).
 *
 * What PyTorch does per element (ATen's bernoulli_distribution<double> on CPUGeneratorImpl):
 *   hi = mt(); lo = mt();                 two 32-bit draws of at::mt19937, hi first
 *   u  = (((hi << 32) | lo) & (2^53 - 1)) * 2^-53
 *   element = (u < p) ? 1 : 0             in memory order (a dense tensor's TensorIterator order)
 * and at::mt19937 is the reference MT19937 (624 words, "left" counting down to a refill).
 *
 * The state comes in and goes out through torch.get_rng_state()/set_rng_state() (the Python
 * side parses and rebuilds those bytes); this file only sees the 624 words, `left` and `next`.
 */
#include <stdint.h>

#define N 624
#define M 397
#define MATRIX_A 0x9908b0dfu
#define UMASK 0x80000000u
#define LMASK 0x7fffffffu

static inline uint32_t twist(uint32_t u, uint32_t v) {
    return (((u & UMASK) | (v & LMASK)) >> 1) ^ ((v & 1u) ? MATRIX_A : 0u);
}

/* at::mt19937_engine::next_state, written as three loops the compiler can vectorise
 * (every read is of a word that is either not yet rewritten or rewritten >= 227 words back). */
static void refill(uint32_t *s) {
    int j;
    for (j = 0; j < N - M; j++) s[j] = s[j + M] ^ twist(s[j], s[j + 1]);
    for (; j < N - 1; j++) s[j] = s[j + M - N] ^ twist(s[j], s[j + 1]);
    s[N - 1] = s[M - 1] ^ twist(s[N - 1], s[0]);
}

static inline uint32_t temper(uint32_t y) {
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
}

/* `count` tempered draws into `out`, advancing (state, *left, *next) as the engine would. */
static void draws(uint32_t *state, int32_t *left, uint32_t *next, uint32_t *out, long count) {
    long done = 0;
    while (done < count) {
        /* The engine refills when --left reaches 0: `left - 1` draws remain before that. */
        if (*left == 1) {
            refill(state);
            *left = N + 1; /* the refilling draw itself decrements it to N */
            *next = 0;
        }
        long take = *left - 1;
        if (take > count - done) take = count - done;
        const uint32_t *src = state + *next;
        for (long i = 0; i < take; i++) out[done + i] = temper(src[i]);
        done += take;
        *next += (uint32_t)take;
        *left -= (int32_t)take;
    }
}

#define CHUNK 4096 /* elements per pass: 2 draws each, 32 KiB of draws, stays in L1/L2 */

/* Fill `n` elements (bf16 when is_bf16, else float32) with Bernoulli(p) 1s and 0s. */
void bernoulli_fill(uint32_t *state, int32_t *left, uint32_t *next, double p, void *dst, long n,
                    int is_bf16) {
    uint32_t buf[2 * CHUNK];
    const uint64_t mask53 = (1ull << 53) - 1;
    for (long base = 0; base < n; base += CHUNK) {
        long len = n - base < CHUNK ? n - base : CHUNK;
        draws(state, left, next, buf, 2 * len);
        if (is_bf16) {
            uint16_t *o = (uint16_t *)dst + base;
            for (long i = 0; i < len; i++) {
                uint64_t bits = (((uint64_t)buf[2 * i] << 32) | buf[2 * i + 1]) & mask53;
                o[i] = ((double)bits * 0x1p-53 < p) ? 0x3f80 : 0; /* bf16 1.0 / 0.0 */
            }
        } else {
            float *o = (float *)dst + base;
            for (long i = 0; i < len; i++) {
                uint64_t bits = (((uint64_t)buf[2 * i] << 32) | buf[2 * i + 1]) & mask53;
                o[i] = ((double)bits * 0x1p-53 < p) ? 1.0f : 0.0f;
            }
        }
    }
}
