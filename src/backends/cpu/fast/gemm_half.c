/*
** gemm_half.c -- matrix product of f32 rows with bf16 or f16 weight rows,
** both contiguous along the reduction (the `linear` layout of a
** half-precision model), accumulated in float as torch's CPU matmul does.
** The weights are converted as they are loaded (bf16: a shift; f16: F16C),
** never stored wider, so a decode step reads 2 bytes per weight.  Four
** weight rows share each load of x; a portable loop with the same sums
** serves CPUs without AVX2.
*/
#include <immintrin.h>

#include "fast.h"
#include "simd.h"

static inline float half_at(const uint16_t *p, int64_t k, bool bf16) { return pt_half_to_f32(p[k], bf16); }

/* Portable: 8 independent partial sums per dot product. */
static float hdot_generic(const float *x, const uint16_t *y, int64_t K, bool bf16) {
    float s[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int l = 0; l < 8; l++) s[l] += x[k + l] * half_at(y, k + l, bf16);
    float acc = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; k < K; k++) acc += x[k] * half_at(y, k, bf16);
    return acc;
}

/* Eight weights as floats. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline __m256 load8(const uint16_t *p, bool bf16) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* Four dot products x . y0..y3 at once (x loaded once per step). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
hdot4(const float *x, const uint16_t *y0, int64_t ldy, int64_t K, bool bf16, float *r) {
    const uint16_t *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
        s0 = _mm256_fmadd_ps(xv, load8(y0 + k, bf16), s0);
        s1 = _mm256_fmadd_ps(xv, load8(y1 + k, bf16), s1);
        s2 = _mm256_fmadd_ps(xv, load8(y2 + k, bf16), s2);
        s3 = _mm256_fmadd_ps(xv, load8(y3 + k, bf16), s3);
    }
    float a0 = fast_hsum256(s0), a1 = fast_hsum256(s1), a2 = fast_hsum256(s2), a3 = fast_hsum256(s3);
    for (; k < K; k++) {
        a0 += x[k] * half_at(y0, k, bf16);
        a1 += x[k] * half_at(y1, k, bf16);
        a2 += x[k] * half_at(y2, k, bf16);
        a3 += x[k] * half_at(y3, k, bf16);
    }
    r[0] = a0, r[1] = a1, r[2] = a2, r[3] = a3;
}

/* The same for two rows of x at once (a prefill): each weight load serves
 * both, and every sum is formed exactly as hdot4 forms it, so a result
 * does not depend on which of the two computed it. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
hdot2x4(const float *x0, const float *x1, const uint16_t *y0, int64_t ldy, int64_t K, bool bf16, float *r0,
        float *r1) {
    const uint16_t *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy;
    __m256 s00 = _mm256_setzero_ps(), s01 = _mm256_setzero_ps(), s02 = _mm256_setzero_ps(),
           s03 = _mm256_setzero_ps(), s10 = _mm256_setzero_ps(), s11 = _mm256_setzero_ps(),
           s12 = _mm256_setzero_ps(), s13 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xa = _mm256_loadu_ps(x0 + k), xb = _mm256_loadu_ps(x1 + k), w;
        w = load8(y0 + k, bf16), s00 = _mm256_fmadd_ps(xa, w, s00), s10 = _mm256_fmadd_ps(xb, w, s10);
        w = load8(y1 + k, bf16), s01 = _mm256_fmadd_ps(xa, w, s01), s11 = _mm256_fmadd_ps(xb, w, s11);
        w = load8(y2 + k, bf16), s02 = _mm256_fmadd_ps(xa, w, s02), s12 = _mm256_fmadd_ps(xb, w, s12);
        w = load8(y3 + k, bf16), s03 = _mm256_fmadd_ps(xa, w, s03), s13 = _mm256_fmadd_ps(xb, w, s13);
    }
    float a[2][4] = {{fast_hsum256(s00), fast_hsum256(s01), fast_hsum256(s02), fast_hsum256(s03)},
                     {fast_hsum256(s10), fast_hsum256(s11), fast_hsum256(s12), fast_hsum256(s13)}};
    const uint16_t *ys[4] = {y0, y1, y2, y3};
    for (; k < K; k++)
        for (int q = 0; q < 4; q++) {
            float w = half_at(ys[q], k, bf16);
            a[0][q] += x0[k] * w, a[1][q] += x1[k] * w;
        }
    for (int q = 0; q < 4; q++) r0[q] = a[0][q], r1[q] = a[1][q];
}

__attribute__((target("avx2,fma,f16c"), always_inline)) static inline float hdot1(const float *x, const uint16_t *y,
                                                                                  int64_t K, bool bf16) {
    __m256 s = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(y + k, bf16), s);
    float acc = fast_hsum256(s);
    for (; k < K; k++) acc += x[k] * half_at(y, k, bf16);
    return acc;
}

/* The AVX2 product for one weight dtype (bf16 a constant in each caller,
 * so each gets its own loop). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
gemm_avx2(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const uint16_t *b, int64_t ldb, bool bf16,
          float *out, int64_t ldo, float alpha) {
    /* x in blocks of MB rows (a prefill's block stays in cache while the
     * weights stream past it); in a block, weight rows in the outer loop:
     * each is read once per block and stays in cache across its rows, two
     * at a time.  Decode (M = 1) reads every weight row once. */
    enum { MB = 32 };
    for (int64_t i0 = 0; i0 < M; i0 += MB) {
        int64_t i1 = i0 + MB < M ? i0 + MB : M, j = 0;
        for (; j + 4 <= N; j += 4) {
            int64_t i = i0;
            for (; i + 2 <= i1; i += 2) {
                float r0[4], r1[4];
                hdot2x4(a + i * lda, a + (i + 1) * lda, b + j * ldb, ldb, K, bf16, r0, r1);
                for (int q = 0; q < 4; q++) out[i * ldo + j + q] = alpha * r0[q], out[(i + 1) * ldo + j + q] = alpha * r1[q];
            }
            for (; i < i1; i++) {
                float r[4];
                hdot4(a + i * lda, b + j * ldb, ldb, K, bf16, r);
                for (int q = 0; q < 4; q++) out[i * ldo + j + q] = alpha * r[q];
            }
        }
        for (; j < N; j++)
            for (int64_t i = i0; i < i1; i++) out[i * ldo + j] = alpha * hdot1(a + i * lda, b + j * ldb, K, bf16);
    }
}

__attribute__((target("avx2,fma,f16c"))) static void gemm_avx2_bf16(int64_t M, int64_t N, int64_t K, const float *a,
                                                                   int64_t lda, const uint16_t *b, int64_t ldb,
                                                                   float *out, int64_t ldo, float alpha) {
    gemm_avx2(M, N, K, a, lda, b, ldb, true, out, ldo, alpha);
}

__attribute__((target("avx2,fma,f16c"))) static void gemm_avx2_f16(int64_t M, int64_t N, int64_t K, const float *a,
                                                                  int64_t lda, const uint16_t *b, int64_t ldb,
                                                                  float *out, int64_t ldo, float alpha) {
    gemm_avx2(M, N, K, a, lda, b, ldb, false, out, ldo, alpha);
}

static bool g_half_simd = true; /* cpu_fast_gemm_half_simd: tests only */

void cpu_fast_gemm_half_simd(bool on) { g_half_simd = on; }

void cpu_fast_gemm_nt_half(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const uint16_t *b,
                           int64_t ldb, bool bf16, float *out, int64_t ldo, float alpha) {
    /* no static: threads call this */
    bool simd = g_half_simd && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                __builtin_cpu_supports("f16c");
    if (simd) {
        if (bf16) gemm_avx2_bf16(M, N, K, a, lda, b, ldb, out, ldo, alpha);
        else gemm_avx2_f16(M, N, K, a, lda, b, ldb, out, ldo, alpha);
        return;
    }
    for (int64_t j = 0; j < N; j++)
        for (int64_t i = 0; i < M; i++) out[i * ldo + j] = alpha * hdot_generic(a + i * lda, b + j * ldb, K, bf16);
}
