/*
** gemm_f32.c -- f32 matrix product with both operands contiguous along the
** reduction (the `linear` layout), for decode (M = 1) and prefill.
** Four rows of b share each load of a; 8-wide partial sums keep the FMA
** units busy.  A portable loop with the same structure serves CPUs
** without AVX2.
*/
#include <immintrin.h>

#include "fast.h"

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

__attribute__((target("avx2,fma"))) static float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
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
    float a0 = hsum256(s0), a1 = hsum256(s1), a2 = hsum256(s2), a3 = hsum256(s3);
    for (; k < K; k++) {
        a0 += x[k] * y0[k];
        a1 += x[k] * y1[k];
        a2 += x[k] * y2[k];
        a3 += x[k] * y3[k];
    }
    r[0] = a0, r[1] = a1, r[2] = a2, r[3] = a3;
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *x, const float *y, int64_t K) {
    __m256 s = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k), s);
    float acc = hsum256(s);
    for (; k < K; k++) acc += x[k] * y[k];
    return acc;
}

void cpu_fast_gemm_nt_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const float *b,
                          int64_t ldb, float *out, int64_t ldo, float alpha) {
    bool have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); /* no static: threads call this */
    /* b rows in the outer loop: each weight row is read once per call for
     * decode (M = 1) and stays in cache across the M rows of a prefill */
    int64_t j = 0;
    if (have_avx2) {
        for (; j + 4 <= N; j += 4) {
            const float *b0 = b + j * ldb;
            for (int64_t i = 0; i < M; i++) {
                float r[4];
                dot4_avx2(a + i * lda, b0, b0 + ldb, b0 + 2 * ldb, b0 + 3 * ldb, K, r);
                for (int q = 0; q < 4; q++) out[i * ldo + j + q] = alpha * r[q];
            }
        }
        for (; j < N; j++)
            for (int64_t i = 0; i < M; i++) out[i * ldo + j] = alpha * dot_avx2(a + i * lda, b + j * ldb, K);
        return;
    }
    for (; j < N; j++)
        for (int64_t i = 0; i < M; i++) out[i * ldo + j] = alpha * dot_generic(a + i * lda, b + j * ldb, K);
}
