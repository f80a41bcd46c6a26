/* Training-mode BatchNorm over a channels-last (rows = N*H*W, C) map, optionally followed by
 * ReLU, forward and backward, bit-identical to PyTorch's CPU operators.
 *
 * Why: PyTorch's channels-last BatchNorm + ReLU ran at a quarter to a half of memory speed
 * here (forward + backward of a 128x32x28x28 bf16 map: 5.6 ms against 0.22 ms to copy it),
 * and S0-M2 has six of them. This does the same arithmetic with fewer passes and no
 * temporaries: the ReLU is applied as the normalised value is stored, and its gradient mask
 * is read as the BatchNorm gradient sums are taken.
 *
 * Bit-identical, because every float operation is PyTorch's own, in its order (ATen's
 * batch_norm_kernel.cpp and Normalization.cpp, channels-last paths):
 *   - the statistics are two passes (the mean, then the sum of squared deviations). The rows
 *     are cut into `parts` = at::get_num_threads() chunks of ceil(rows / parts) as
 *     at::parallel_for cuts them; each chunk sums per channel, in row order, into float; the
 *     chunks' sums are then added in chunk order, in float for bf16 input and in double for
 *     float input (ATen's accumulate types), whichever threads do the work here;
 *   - invstd, the running statistics, alpha = invstd * w and beta = b - mean * alpha are
 *     computed with ATen's types (float or double) and rounding points;
 *   - y = x * alpha + beta, rounded to bf16 as ATen's vectorised path does (a NaN becomes
 *     0xffff) in the lanes it vectorises and as its scalar tail does (0x7fc0) in the rest;
 *   - ReLU is clamp_min(y, 0) (-0.0 and NaN pass) and its gradient is zero where the
 *     output is <= 0 (threshold_backward).
 * ATen's build lets its compiler fuse a multiply and an add into one rounding in some of
 * these expressions and not in others (found by comparing bits): this file is compiled with
 * -ffp-contract=off and calls fmaf() exactly where ATen's code was fused. All of it rests
 * on that build, which is why batchnorm.py checks the kernel against PyTorch before use.
 *
 * Threads: OpenMP loops; loaded into a process that has PyTorch, libgomp.so.1 resolves to
 * PyTorch's copy, so the kernels share its thread pool.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* float -> bf16, rounding to nearest even. A NaN becomes 0xffff in the channels ATen's build
 * converts in 16-lane vectors and 0x7fc0 in the rest (its scalar conversion). */
INLINE uint16_t narrow(float f, int vector_lane) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint16_t rounded = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    const uint16_t nan = vector_lane ? 0xffff : 0x7fc0;
    return f != f ? nan : rounded;
}

INLINE float load(const void *p, long i, const int bf16) {
    return bf16 ? widen(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* ATen's combine of the chunks' float sums: in float for bf16 input, double for float. */
static double combine(const float *buf, int parts, long c, long k, int bf16) {
    if (bf16) {
        float s = 0.0f;
        for (int t = 0; t < parts; t++) s += buf[t * c + k];
        return s;
    }
    double s = 0.0;
    for (int t = 0; t < parts; t++) s += buf[t * c + k];
    return s;
}

/* Per channel, in row order: acc += x (pass 1) or acc = fma(x - mean, x - mean, acc). */
INLINE void sum_rows(const void *restrict x, long b, long e, const long c,
                     float *restrict out, const float *restrict mean, const int bf16) {
    float acc[c]; /* local: the threads' sums never share a cache line while they run */
    for (long k = 0; k < c; k++) acc[k] = 0.0f;
    for (long i = b; i < e; i++)
        for (long k = 0; k < c; k++) {
            const float v = load(x, i * c + k, bf16);
            if (mean) {
                const float d = v - mean[k];
                acc[k] = fmaf(d, d, acc[k]);
            } else {
                acc[k] = acc[k] + v;
            }
        }
    for (long k = 0; k < c; k++) out[k] = acc[k];
}

static void stats_pass(const void *x, long rows, long c, int bf16, int parts, int threads,
                       float *buf, const float *mean) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < parts; t++) {
        long b, e;
        chunk_bounds(rows, parts, t, &b, &e);
        float *acc = buf + (long)t * c;
#define SUM_ROWS(C)                                                                          \
    if (bf16 && mean) sum_rows(x, b, e, C, acc, mean, 1);                                    \
    else if (bf16) sum_rows(x, b, e, C, acc, NULL, 1);                                       \
    else if (mean) sum_rows(x, b, e, C, acc, mean, 0);                                       \
    else sum_rows(x, b, e, C, acc, NULL, 0)
        WITH_CHANNELS(c, SUM_ROWS)
#undef SUM_ROWS
    }
}

/* y = fma(x, alpha, beta), rounded as ATen rounds, then clamp_min(y, 0) with `relu`
 * (-0.0 and NaN pass). */
INLINE void normalise_rows(const void *restrict x, void *restrict y, long i0, long i1,
                           const long c, const float *restrict alpha,
                           const float *restrict beta, const uint16_t *restrict nan_code,
                           const int bf16, const int relu) {
    for (long i = i0; i < i1; i++)
        for (long k = 0; k < c; k++) {
            const float v = fmaf(load(x, i * c + k, bf16), alpha[k], beta[k]);
            if (bf16) {
                uint32_t u;
                memcpy(&u, &v, sizeof u);
                const uint16_t rounded = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
                const uint16_t out = v != v ? nan_code[k] : rounded;
                ((uint16_t *)y)[i * c + k] = relu && widen(out) < 0.0f ? 0 : out;
            } else {
                ((float *)y)[i * c + k] = relu && v < 0.0f ? 0.0f : v;
            }
        }
}

/* The bf16 NaN code per channel for rows [first, last): 0xffff where ATen's conversion is
 * vectorised, else 0x7fc0. ReLU's own pass re-rounds through float in 32-element vectors
 * over the flat map (a NaN becomes 0xffff there) and keeps the value in its scalar tail. */
static void nan_codes(uint16_t *code, long c, long nan_lanes, int relu_vectorised) {
    for (long k = 0; k < c; k++) code[k] = relu_vectorised || k < nan_lanes ? 0xffff : 0x7fc0;
}

/* Returns 0, or -1 when out of memory. */
int bn_forward(const void *x, void *y, long rows, long c, int bf16, int relu,
               const float *weight, const float *bias, float *running_mean, float *running_var,
               double momentum, double eps, float *save_mean, float *save_invstd, int parts,
               long nan_lanes, int threads) {
    float *buf = malloc(sizeof(float) * parts * c);
    float *alpha = malloc(sizeof(float) * c), *beta = malloc(sizeof(float) * c);
    uint16_t *code = malloc(sizeof(uint16_t) * c);
    if (!buf || !alpha || !beta || !code) {
        free(buf); free(alpha); free(beta); free(code);
        return -1;
    }
    if (threads < 1) threads = 1;

    stats_pass(x, rows, c, bf16, parts, threads, buf, NULL);
    for (long k = 0; k < c; k++) {
        if (bf16) save_mean[k] = (float)combine(buf, parts, c, k, 1) / (float)rows;
        else save_mean[k] = (float)(combine(buf, parts, c, k, 0) / (double)rows);
    }
    stats_pass(x, rows, c, bf16, parts, threads, buf, save_mean);
    const float m = (float)momentum;
    for (long k = 0; k < c; k++) {
        const float var_sum = (float)combine(buf, parts, c, k, bf16), mean = save_mean[k];
        const double var = var_sum / (float)rows; /* a float quotient, then InvStd<double> */
        save_invstd[k] = (float)((var != 0.0 || eps != 0.0) ? 1.0 / sqrt(var + eps) : 0.0);
        if (running_mean) running_mean[k] = m * mean + (1 - m) * running_mean[k];
        if (running_var) {
            const float unbiased = var_sum / (float)(rows - 1);
            if (bf16)
                running_var[k] = m * unbiased + (1 - m) * running_var[k];
            else /* float * double, plus a float product, in double */
                running_var[k] = (float)((double)m * unbiased + (double)((1 - m) * running_var[k]));
        }
        alpha[k] = save_invstd[k] * (weight ? weight[k] : 1.0f);
        beta[k] = fmaf(-mean, alpha[k], bias ? bias[k] : 0.0f);
    }

    /* Rows wholly inside ReLU's vectorised part, then the rest (a row or two at most). */
    const long relu_rows = relu ? (rows * c - rows * c % 32) / c : rows;
    nan_codes(code, c, nan_lanes, relu);
#pragma omp parallel num_threads(threads)
    {
        long b, e; /* elementwise: any split of the rows gives the same values */
        thread_share(relu_rows, &b, &e);
#define NORMALISE(C)                                                                         \
    if (bf16 && relu) normalise_rows(x, y, b, e, C, alpha, beta, code, 1, 1);                \
    else if (bf16) normalise_rows(x, y, b, e, C, alpha, beta, code, 1, 0);                   \
    else if (relu) normalise_rows(x, y, b, e, C, alpha, beta, code, 0, 1);                   \
    else normalise_rows(x, y, b, e, C, alpha, beta, code, 0, 0)
        WITH_CHANNELS(c, NORMALISE)
#undef NORMALISE
    }
    for (long i = relu_rows; i < rows; i++) { /* one row at a time: the flat index decides */
        for (long k = 0; k < c; k++)
            code[k] = i * c + k < rows * c - rows * c % 32 || k < nan_lanes ? 0xffff : 0x7fc0;
        if (bf16) normalise_rows(x, y, i, i + 1, c, alpha, beta, code, 1, relu);
        else normalise_rows(x, y, i, i + 1, c, alpha, beta, code, 0, relu);
    }
    free(buf); free(alpha); free(beta); free(code);
    return 0;
}

/* The gradient reaching the BatchNorm: dy, or 0 where the ReLU's output y is <= 0
 * (threshold_backward). In bf16, threshold_backward's vector pass re-rounds a NaN gradient
 * through float to 0xffff (`canon`); its scalar tail, the flat map's last numel % 32
 * elements, passes it unchanged. */
INLINE float grad_at(const void *dy, const void *y, long i, const int bf16, const int relu,
                     const int canon) {
    float g = load(dy, i, bf16);
    if (bf16 && relu && canon) g = g != g ? widen(0xffff) : g;
    return relu && load(y, i, bf16) <= 0.0f ? 0.0f : g;
}

/* Adds rows [b, e)'s per-channel gradient sums and dot products into sum_out, dotp_out. */
INLINE void grad_sums(const void *restrict x, const void *restrict y,
                      const void *restrict dy, long b, long e, const long c,
                      const float *restrict mean, float *restrict sum_out,
                      float *restrict dotp_out, const int bf16, const int relu, long canon_end) {
    float sum[c], dotp[c]; /* local, as in sum_rows */
    for (long k = 0; k < c; k++) sum[k] = sum_out[k], dotp[k] = dotp_out[k];
    for (long i = b; i < e; i++)
        for (long k = 0; k < c; k++) {
            const float g = grad_at(dy, y, i * c + k, bf16, relu, i * c + k < canon_end);
            sum[k] = g + sum[k];
            dotp[k] = fmaf(load(x, i * c + k, bf16) - mean[k], g, dotp[k]);
        }
    for (long k = 0; k < c; k++) sum_out[k] = sum[k], dotp_out[k] = dotp[k];
}

/* dx = (g - grad_mean - (x - mean) * k) * invstd * w. ATen's float kernel fuses the
 * subtraction of the product in the channels it computes in 8- or 16-lane vectors
 * (`fused_lanes`), not in the rest; its bf16 kernel does not fuse it. */
INLINE void grad_input_rows(const void *restrict x, const void *restrict y,
                            const void *restrict dy, void *restrict dx, long i0, long i1,
                            const long c, const float *restrict mean,
                            const float *restrict k_proj, const float *restrict grad_mean,
                            const float *restrict invstd, const float *restrict w,
                            long nan_lanes, long fused_lanes, const int bf16, const int relu,
                            long canon_end) {
    for (long i = i0; i < i1; i++)
        for (long k = 0; k < c; k++) {
            const float centred = load(x, i * c + k, bf16) - mean[k];
            const float g = grad_at(dy, y, i * c + k, bf16, relu, i * c + k < canon_end);
            const float plain = g - grad_mean[k] - centred * k_proj[k];
            const float fused = fmaf(-centred, k_proj[k], g - grad_mean[k]);
            const float v = (!bf16 && k < fused_lanes ? fused : plain) * invstd[k] * w[k];
            if (bf16) ((uint16_t *)dx)[i * c + k] = narrow(v, k < nan_lanes);
            else ((float *)dx)[i * c + k] = v;
        }
}

/* Returns 0, or -1 when out of memory. `y` is the ReLU's output, or NULL without a ReLU. */
int bn_backward(const void *x, const void *y, const void *dy, void *dx, long rows, long c,
                int bf16, const float *weight, const float *save_mean,
                const float *save_invstd, float *grad_weight, float *grad_bias, int parts,
                long nan_lanes, long fused_lanes, int threads) {
    const int relu = y != NULL;
    float *buf = calloc((size_t)2 * parts * c, sizeof(float));
    float *per_channel = malloc(sizeof(float) * 5 * c);
    if (!buf || !per_channel) {
        free(buf); free(per_channel);
        return -1;
    }
    float *sum = per_channel, *dotp = sum + c, *k_proj = dotp + c, *grad_mean = k_proj + c;
    float *w = grad_mean + c;
    float *dot_buf = buf + (long)parts * c;
    if (threads < 1) threads = 1;
    /* Rows wholly inside threshold_backward's vectorised part (NaNs canonical), then the
     * rest, where the flat index decides element by element (a row or two at most). */
    const long canon_end = rows * c - rows * c % 32, main_rows = relu ? canon_end / c : rows;

#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < parts; t++) {
        long b, e;
        chunk_bounds(rows, parts, t, &b, &e);
        const long m = e < main_rows ? e : main_rows > b ? main_rows : b;
        float *s = buf + (long)t * c, *d = dot_buf + (long)t * c;
#define GRAD_SUMS(C)                                                                         \
    if (bf16 && relu) grad_sums(x, y, dy, b, m, C, save_mean, s, d, 1, 1, LONG_MAX);         \
    else if (bf16) grad_sums(x, y, dy, b, m, C, save_mean, s, d, 1, 0, 0);                   \
    else if (relu) grad_sums(x, y, dy, b, m, C, save_mean, s, d, 0, 1, 0);                   \
    else grad_sums(x, y, dy, b, m, C, save_mean, s, d, 0, 0, 0)
        WITH_CHANNELS(c, GRAD_SUMS)
#undef GRAD_SUMS
        if (m < e) /* the tail rows */
            grad_sums(x, y, dy, m, e, c, save_mean, s, d, bf16, relu, canon_end);
    }
    const float n = (float)rows;
    for (long k = 0; k < c; k++) {
        sum[k] = (float)combine(buf, parts, c, k, bf16);
        dotp[k] = (float)combine(dot_buf, parts, c, k, bf16);
        k_proj[k] = dotp[k] * save_invstd[k] * save_invstd[k] / n;
        grad_mean[k] = sum[k] / n;
        w[k] = weight ? weight[k] : 1.0f;
    }

#pragma omp parallel num_threads(threads)
    {
        long b, e;
        thread_share(main_rows, &b, &e);
#define GRAD_INPUT(C, BF16, RELU)                                                            \
    grad_input_rows(x, y, dy, dx, b, e, C, save_mean, k_proj, grad_mean, save_invstd, w,    \
                    nan_lanes, fused_lanes, BF16, RELU, LONG_MAX)
#define GRAD_INPUTS(C)                                                                       \
    if (bf16 && relu) GRAD_INPUT(C, 1, 1);                                                   \
    else if (bf16) GRAD_INPUT(C, 1, 0);                                                      \
    else if (relu) GRAD_INPUT(C, 0, 1);                                                      \
    else GRAD_INPUT(C, 0, 0)
        WITH_CHANNELS(c, GRAD_INPUTS)
#undef GRAD_INPUTS
#undef GRAD_INPUT
    }
    grad_input_rows(x, y, dy, dx, main_rows, rows, c, save_mean, k_proj, grad_mean, save_invstd,
                    w, nan_lanes, fused_lanes, bf16, relu, canon_end);
    for (long k = 0; k < c; k++) {
        if (grad_weight) grad_weight[k] = dotp[k] * save_invstd[k];
        if (grad_bias) grad_bias[k] = sum[k];
    }
    free(buf); free(per_channel);
    return 0;
}
