/*
** gemm_f32.c -- f32 matrix product with both operands contiguous along the
** reduction (the `linear` layout), for decode (M = 1) and prefill.
** Four rows of b share each load of a (and in a prefill two rows of a
** each load of b); 8-wide partial sums keep the FMA units busy.  A portable loop with the same structure serves CPUs
** without AVX2.
*/
#include <immintrin.h>

#include "fast.h"
#include "simd.h"

/* Portable: 8 independent partial sums per dot product. */
static float dot_generic(const float *x, const float *y, int64_t K) {
    float s[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int l = 0; l < 8; l++) s[l] += x[k + l] * y[k + l];
    float acc = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; k < K; k++) acc += x[k] * y[k];
    return acc;
}

/* Four dot products x . y0..y3 at once (x loaded once per step). */
__attribute__((target("avx2,fma"))) static void dot4_avx2(const float *x, const float *y0, const float *y1,
                                                           const float *y2, const float *y3, int64_t K,
                                                           float *r) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
        s0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y0 + k), s0);
        s1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y1 + k), s1);
        s2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y2 + k), s2);
        s3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y3 + k), s3);
    }
    float a0 = fast_hsum256(s0), a1 = fast_hsum256(s1), a2 = fast_hsum256(s2), a3 = fast_hsum256(s3);
    for (; k < K; k++) {
        a0 += x[k] * y0[k];
        a1 += x[k] * y1[k];
        a2 += x[k] * y2[k];
        a3 += x[k] * y3[k];
    }
    r[0] = a0, r[1] = a1, r[2] = a2, r[3] = a3;
}

/* The same for two rows of x (a prefill): each weight load serves both,
 * and every sum is formed exactly as dot4_avx2 forms it, so a result does
 * not depend on which of the two computed it. */
__attribute__((target("avx2,fma"))) static void dot2x4_avx2(const float *x0, const float *x1, const float *y0,
                                                             int64_t ldy, int64_t K, float *r0, float *r1) {
    const float *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy;
    __m256 s00 = _mm256_setzero_ps(), s01 = _mm256_setzero_ps(), s02 = _mm256_setzero_ps(),
           s03 = _mm256_setzero_ps(), s10 = _mm256_setzero_ps(), s11 = _mm256_setzero_ps(),
           s12 = _mm256_setzero_ps(), s13 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xa = _mm256_loadu_ps(x0 + k), xb = _mm256_loadu_ps(x1 + k), w;
        w = _mm256_loadu_ps(y0 + k), s00 = _mm256_fmadd_ps(xa, w, s00), s10 = _mm256_fmadd_ps(xb, w, s10);
        w = _mm256_loadu_ps(y1 + k), s01 = _mm256_fmadd_ps(xa, w, s01), s11 = _mm256_fmadd_ps(xb, w, s11);
        w = _mm256_loadu_ps(y2 + k), s02 = _mm256_fmadd_ps(xa, w, s02), s12 = _mm256_fmadd_ps(xb, w, s12);
        w = _mm256_loadu_ps(y3 + k), s03 = _mm256_fmadd_ps(xa, w, s03), s13 = _mm256_fmadd_ps(xb, w, s13);
    }
    float a[2][4] = {{fast_hsum256(s00), fast_hsum256(s01), fast_hsum256(s02), fast_hsum256(s03)},
                     {fast_hsum256(s10), fast_hsum256(s11), fast_hsum256(s12), fast_hsum256(s13)}};
    const float *ys[4] = {y0, y1, y2, y3};
    for (; k < K; k++)
        for (int q = 0; q < 4; q++) a[0][q] += x0[k] * ys[q][k], a[1][q] += x1[k] * ys[q][k];
    for (int q = 0; q < 4; q++) r0[q] = a[0][q], r1[q] = a[1][q];
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *x, const float *y, int64_t K) {
    __m256 s = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k), s);
    float acc = fast_hsum256(s);
    for (; k < K; k++) acc += x[k] * y[k];
    return acc;
}

static bool g_f32_simd = true; /* cpu_fast_gemm_f32_simd: tests only */

void cpu_fast_gemm_f32_simd(bool on) { g_f32_simd = on; }

void cpu_fast_gemm_nt_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const float *b,
                          int64_t ldb, float *out, int64_t ldo, float alpha) {
    bool have_avx2 = g_f32_simd && __builtin_cpu_supports("avx2") &&
                     __builtin_cpu_supports("fma"); /* no static: threads call this */
    int64_t j = 0;
    if (have_avx2) {
        /* x in blocks of MB rows (a prefill's block stays in cache while
         * the weights stream past it); in a block, b rows in the outer
         * loop: each is read once per block and stays in cache across its
         * rows, two at a time.  Decode (M = 1) reads every b row once. */
        enum { MB = 32 };
        for (int64_t i0 = 0; i0 < M; i0 += MB) {
            int64_t i1 = i0 + MB < M ? i0 + MB : M;
            for (j = 0; j + 4 <= N; j += 4) {
                const float *b0 = b + j * ldb;
                int64_t i = i0;
                for (; i + 2 <= i1; i += 2) {
                    float r0[4], r1[4];
                    dot2x4_avx2(a + i * lda, a + (i + 1) * lda, b0, ldb, K, r0, r1);
                    for (int q = 0; q < 4; q++)
                        out[i * ldo + j + q] = alpha * r0[q], out[(i + 1) * ldo + j + q] = alpha * r1[q];
                }
                for (; i < i1; i++) {
                    float r[4];
                    dot4_avx2(a + i * lda, b0, b0 + ldb, b0 + 2 * ldb, b0 + 3 * ldb, K, r);
                    for (int q = 0; q < 4; q++) out[i * ldo + j + q] = alpha * r[q];
                }
            }
            for (; j < N; j++)
                for (int64_t i = i0; i < i1; i++) out[i * ldo + j] = alpha * dot_avx2(a + i * lda, b + j * ldb, K);
        }
        return;
    }
    for (; j < N; j++)
        for (int64_t i = 0; i < M; i++) out[i * ldo + j] = alpha * dot_generic(a + i * lda, b + j * ldb, K);
}
