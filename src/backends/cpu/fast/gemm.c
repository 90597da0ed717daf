/*
** gemm.c -- matrix product of f32 rows with f32, bf16 or f16 weight rows,
** both contiguous along the reduction (the `linear` layout), for decode
** (M = 1) and prefill, accumulated in float as torch's CPU matmul does.
** Half-precision weights are converted as they are loaded (bf16: a shift;
** f16: F16C), never stored wider, so a decode step reads 2 bytes per
** weight.  A decode (one row of x) reads the weight rows one after
** another, one stream through memory: reading four rows side by side
** (sharing each load of x, which is in L1 anyway) measured 2-3 times
** slower from DRAM on a Zen 5 core (10-15 GB/s against 26-29 with
** AVX-512, at K = 1024 and 2048 in bf16), as the prefetchers follow four
** short interleaved streams badly.  A prefill takes two rows of x and four
** weight rows at a time (each weight load serves both rows of x), every
** sum formed as the decode forms it: 8 lanes with AVX2, 16 with AVX-512
** (where the CPU has it: twice the weights per instruction), one partial
** sum per lane.  One set of kernels serves the three weight kinds: the
** kind is a constant in each entry point, so each gets its own inlined
** loops.  A portable loop with the same sums as the AVX2 ones serves CPUs
** without AVX2.
*/
#include <immintrin.h>

#include "fast.h"
#include "simd.h"

enum { W_F32, W_BF16, W_F16 }; /* weight element kinds */

/* Weight row j of b (row stride ldb elements). */
static inline const void *wrow(const void *b, int64_t j, int64_t ldb, int kind) {
    return (const char *)b + j * ldb * (kind == W_F32 ? 4 : 2);
}

/* Weight k of a row, as a float. */
static inline float wat(const void *p, int64_t k, int kind) {
    if (kind == W_F32) return ((const float *)p)[k];
    return pt_half_to_f32(((const uint16_t *)p)[k], kind == W_BF16);
}

/* Portable: 8 independent partial sums per dot product. */
__attribute__((always_inline)) static inline float wdot_generic(const float *x, const void *y, int64_t K, int kind) {
    float s[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int l = 0; l < 8; l++) s[l] += x[k + l] * wat(y, k + l, kind);
    float acc = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; k < K; k++) acc += x[k] * wat(y, k, kind);
    return acc;
}

/* Eight weights from k on, as floats. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline __m256 load8(const void *p, int64_t k,
                                                                                   int kind) {
    if (kind == W_F32) return _mm256_loadu_ps((const float *)p + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + k));
    if (kind == W_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* Four dot products with each of two rows of x (a prefill): each weight
 * load serves both, and every sum is formed exactly as wdot1 forms it, so
 * a result does not depend on which of the two computed it. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
wdot2x4(const float *x0, const float *x1, const void *y0, int64_t ldy, int64_t K, int kind, float *r0, float *r1) {
    const void *y1 = wrow(y0, 1, ldy, kind), *y2 = wrow(y0, 2, ldy, kind), *y3 = wrow(y0, 3, ldy, kind);
    __m256 s00 = _mm256_setzero_ps(), s01 = _mm256_setzero_ps(), s02 = _mm256_setzero_ps(),
           s03 = _mm256_setzero_ps(), s10 = _mm256_setzero_ps(), s11 = _mm256_setzero_ps(),
           s12 = _mm256_setzero_ps(), s13 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xa = _mm256_loadu_ps(x0 + k), xb = _mm256_loadu_ps(x1 + k), w;
        w = load8(y0, k, kind), s00 = _mm256_fmadd_ps(xa, w, s00), s10 = _mm256_fmadd_ps(xb, w, s10);
        w = load8(y1, k, kind), s01 = _mm256_fmadd_ps(xa, w, s01), s11 = _mm256_fmadd_ps(xb, w, s11);
        w = load8(y2, k, kind), s02 = _mm256_fmadd_ps(xa, w, s02), s12 = _mm256_fmadd_ps(xb, w, s12);
        w = load8(y3, k, kind), s03 = _mm256_fmadd_ps(xa, w, s03), s13 = _mm256_fmadd_ps(xb, w, s13);
    }
    float a[2][4] = {{fast_hsum256(s00), fast_hsum256(s01), fast_hsum256(s02), fast_hsum256(s03)},
                     {fast_hsum256(s10), fast_hsum256(s11), fast_hsum256(s12), fast_hsum256(s13)}};
    const void *ys[4] = {y0, y1, y2, y3};
    for (; k < K; k++)
        for (int q = 0; q < 4; q++) {
            float w = wat(ys[q], k, kind);
            a[0][q] += x0[k] * w, a[1][q] += x1[k] * w;
        }
    for (int q = 0; q < 4; q++) r0[q] = a[0][q], r1[q] = a[1][q];
}

/* One dot product x . y: eight partial sums over k, added as fast_hsum256
 * adds them, then the tail in order. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline float wdot1(const float *x, const void *y,
                                                                                  int64_t K, int kind) {
    __m256 s = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(y, k, kind), s);
    float acc = fast_hsum256(s);
    for (; k < K; k++) acc += x[k] * wat(y, k, kind);
    return acc;
}

/* The product's loops over one ISA's dot products DOT1 (one row of x)
 * DOT2X4 (two rows of x, four weight rows) and DOT4X4 (four rows of x,
 * four weight rows; every sum formed as DOT1 forms it): the body of gemm_avx2 and
 * gemm_avx512, which cannot share one inlined function as their target
 * attributes differ.  x in blocks of MB rows (a prefill's block stays in
 * cache while the weights stream past it); in a block, weight rows in the
 * outer loop: each is read once per block and stays in cache across its
 * rows, four (then two) at a time.  A lone row of x (decode, or a block's odd row)
 * takes the group's weight rows one by one: a decode streams W in order. */
#define GEMM_LOOPS(DOT1, DOT2X4, DOT4X4)                                                                            \
    do {                                                                                                           \
        enum { MB = 32 };                                                                                          \
        for (int64_t i0 = 0; i0 < M; i0 += MB) {                                                                   \
            int64_t i1 = i0 + MB < M ? i0 + MB : M, j = 0;                                                         \
            for (; j + 4 <= N; j += 4) {                                                                           \
                const void *bj = wrow(b, j, ldb, kind);                                                            \
                int64_t i = i0;                                                                                    \
                for (; i + 4 <= i1; i += 4) {                                                                      \
                    float r[4][4];                                                                                 \
                    DOT4X4(a + i * lda, lda, bj, ldb, K, kind, r);                                                 \
                    for (int u = 0; u < 4; u++)                                                                    \
                        for (int q = 0; q < 4; q++) out[(i + u) * ldo + j + q] = alpha * r[u][q];                  \
                }                                                                                                  \
                for (; i + 2 <= i1; i += 2) {                                                                      \
                    float r0[4], r1[4];                                                                            \
                    DOT2X4(a + i * lda, a + (i + 1) * lda, bj, ldb, K, kind, r0, r1);                              \
                    for (int q = 0; q < 4; q++)                                                                    \
                        out[i * ldo + j + q] = alpha * r0[q], out[(i + 1) * ldo + j + q] = alpha * r1[q];          \
                }                                                                                                  \
                for (; i < i1; i++)                                                                                \
                    for (int q = 0; q < 4; q++)                                                                    \
                        out[i * ldo + j + q] = alpha * DOT1(a + i * lda, wrow(bj, q, ldb, kind), K, kind);         \
            }                                                                                                      \
            for (; j < N; j++)                                                                                     \
                for (int64_t i = i0; i < i1; i++)                                                                  \
                    out[i * ldo + j] = alpha * DOT1(a + i * lda, wrow(b, j, ldb, kind), K, kind);                  \
        }                                                                                                          \
    } while (0)

/* Four rows of x (lda apart) as two pairs: AVX2 has too few registers for
 * sixteen sums at once. */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
wdot4x4(const float *x, int64_t lda, const void *y0, int64_t ldy, int64_t K, int kind, float r[4][4]) {
    wdot2x4(x, x + lda, y0, ldy, K, kind, r[0], r[1]);
    wdot2x4(x + 2 * lda, x + 3 * lda, y0, ldy, K, kind, r[2], r[3]);
}

/* The AVX2 product for one weight kind (a constant in each caller, so
 * each gets its own loop). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
gemm_avx2(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const void *b, int64_t ldb, int kind,
          float *out, int64_t ldo, float alpha) {
    GEMM_LOOPS(wdot1, wdot2x4, wdot4x4);
}

__attribute__((target("avx2,fma,f16c"))) static void gemm_avx2_f32(int64_t M, int64_t N, int64_t K, const float *a,
                                                                  int64_t lda, const float *b, int64_t ldb,
                                                                  float *out, int64_t ldo, float alpha) {
    gemm_avx2(M, N, K, a, lda, b, ldb, W_F32, out, ldo, alpha);
}

__attribute__((target("avx2,fma,f16c"))) static void gemm_avx2_bf16(int64_t M, int64_t N, int64_t K, const float *a,
                                                                   int64_t lda, const uint16_t *b, int64_t ldb,
                                                                   float *out, int64_t ldo, float alpha) {
    gemm_avx2(M, N, K, a, lda, b, ldb, W_BF16, out, ldo, alpha);
}

__attribute__((target("avx2,fma,f16c"))) static void gemm_avx2_f16(int64_t M, int64_t N, int64_t K, const float *a,
                                                                  int64_t lda, const uint16_t *b, int64_t ldb,
                                                                  float *out, int64_t ldo, float alpha) {
    gemm_avx2(M, N, K, a, lda, b, ldb, W_F16, out, ldo, alpha);
}

/* ---- AVX-512: the same products sixteen lanes wide ---------------------------- */

#define AVX512_INLINE __attribute__((target("avx512f,avx2,fma,f16c"), always_inline)) static inline

/* Sixteen weights from k on, as floats. */
AVX512_INLINE __m512 load16(const void *p, int64_t k, int kind) {
    if (kind == W_F32) return _mm512_loadu_ps((const float *)p + k);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + k));
    if (kind == W_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* The sum of v's sixteen lanes: the halves added, then as fast_hsum256. */
AVX512_INLINE float hsum512(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return fast_hsum256(_mm256_add_ps(lo, hi));
}

/* wdot1 with sixteen partial sums. */
AVX512_INLINE float wdot1_512(const float *x, const void *y, int64_t K, int kind) {
    __m512 s = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), load16(y, k, kind), s);
    float acc = hsum512(s);
    for (; k < K; k++) acc += x[k] * wat(y, k, kind);
    return acc;
}

/* R (2 or 4, a constant once inlined) rows of x, lda apart, with four
 * weight rows: 4 R sums of sixteen lanes in registers, so each k step
 * loads R + 4 vectors for 4 R multiply-adds; each sum formed as wdot1_512
 * forms it. */
AVX512_INLINE void wdot_rx4_512(const float *x, int64_t lda, const void *y0, int64_t ldy, int64_t K, int kind,
                                int R, float r[4][4]) {
    const void *ys[4] = {y0, wrow(y0, 1, ldy, kind), wrow(y0, 2, ldy, kind), wrow(y0, 3, ldy, kind)};
    const float *xs[4] = {x, x + lda, x + 2 * lda, x + 3 * lda};
    __m512 s[4][4];
#pragma GCC unroll 4
    for (int u = 0; u < R; u++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) s[u][q] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 w[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) w[q] = load16(ys[q], k, kind);
#pragma GCC unroll 4
        for (int u = 0; u < R; u++) {
            __m512 xv = _mm512_loadu_ps(xs[u] + k);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) s[u][q] = _mm512_fmadd_ps(xv, w[q], s[u][q]);
        }
    }
    for (int u = 0; u < R; u++)
        for (int q = 0; q < 4; q++) r[u][q] = hsum512(s[u][q]);
    for (; k < K; k++)
        for (int q = 0; q < 4; q++) {
            float wv = wat(ys[q], k, kind);
            for (int u = 0; u < R; u++) r[u][q] += xs[u][k] * wv;
        }
}

/* GEMM_LOOPS' two- and four-row products over wdot_rx4_512. */
AVX512_INLINE void wdot2x4_512(const float *x0, const float *x1, const void *y0, int64_t ldy, int64_t K, int kind,
                               float *r0, float *r1) {
    float r[4][4];
    wdot_rx4_512(x0, x1 - x0, y0, ldy, K, kind, 2, r);
    for (int q = 0; q < 4; q++) r0[q] = r[0][q], r1[q] = r[1][q];
}
AVX512_INLINE void wdot4x4_512(const float *x, int64_t lda, const void *y0, int64_t ldy, int64_t K, int kind,
                               float r[4][4]) {
    wdot_rx4_512(x, lda, y0, ldy, K, kind, 4, r);
}

/* The same loops over the sixteen-lane dot products. */
AVX512_INLINE void gemm_avx512(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const void *b,
                               int64_t ldb, int kind, float *out, int64_t ldo, float alpha) {
    GEMM_LOOPS(wdot1_512, wdot2x4_512, wdot4x4_512);
}

__attribute__((target("avx512f,avx2,fma,f16c"))) static void gemm_avx512_f32(int64_t M, int64_t N, int64_t K,
                                                                            const float *a, int64_t lda,
                                                                            const float *b, int64_t ldb, float *out,
                                                                            int64_t ldo, float alpha) {
    gemm_avx512(M, N, K, a, lda, b, ldb, W_F32, out, ldo, alpha);
}

__attribute__((target("avx512f,avx2,fma,f16c"))) static void gemm_avx512_half(int64_t M, int64_t N, int64_t K,
                                                                             const float *a, int64_t lda,
                                                                             const uint16_t *b, int64_t ldb,
                                                                             bool bf16, float *out, int64_t ldo,
                                                                             float alpha) {
    if (bf16) gemm_avx512(M, N, K, a, lda, b, ldb, W_BF16, out, ldo, alpha);
    else gemm_avx512(M, N, K, a, lda, b, ldb, W_F16, out, ldo, alpha);
}

/* The portable product (inlined: the kind is a constant where it can be). */
__attribute__((always_inline)) static inline void gemm_generic(int64_t M, int64_t N, int64_t K, const float *a,
                                                                int64_t lda, const void *b, int64_t ldb, int kind,
                                                                float *out, int64_t ldo, float alpha) {
    for (int64_t j = 0; j < N; j++)
        for (int64_t i = 0; i < M; i++)
            out[i * ldo + j] = alpha * wdot_generic(a + i * lda, wrow(b, j, ldb, kind), K, kind);
}

static bool have_avx512(void) { return fast_have_avx2() && fast_have_avx512(); } /* its loops use both */

static bool g_f32_simd = true, g_half_simd = true, g_avx512 = true; /* the test hooks: tests only */

void cpu_fast_gemm_f32_simd(bool on) { g_f32_simd = on; }
void cpu_fast_gemm_half_simd(bool on) { g_half_simd = on; }
void cpu_fast_gemm_avx512(bool on) { g_avx512 = on; }

void cpu_fast_gemm_nt_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const float *b,
                          int64_t ldb, float *out, int64_t ldo, float alpha) {
    if (g_f32_simd && g_avx512 && have_avx512()) gemm_avx512_f32(M, N, K, a, lda, b, ldb, out, ldo, alpha);
    else if (g_f32_simd && fast_have_avx2()) gemm_avx2_f32(M, N, K, a, lda, b, ldb, out, ldo, alpha);
    else gemm_generic(M, N, K, a, lda, b, ldb, W_F32, out, ldo, alpha);
}

void cpu_fast_gemm_nt_half(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda, const uint16_t *b,
                           int64_t ldb, bool bf16, float *out, int64_t ldo, float alpha) {
    if (g_half_simd && g_avx512 && have_avx512()) {
        gemm_avx512_half(M, N, K, a, lda, b, ldb, bf16, out, ldo, alpha);
    } else if (g_half_simd && fast_have_avx2()) {
        if (bf16) gemm_avx2_bf16(M, N, K, a, lda, b, ldb, out, ldo, alpha);
        else gemm_avx2_f16(M, N, K, a, lda, b, ldb, out, ldo, alpha);
    } else {
        gemm_generic(M, N, K, a, lda, b, ldb, bf16 ? W_BF16 : W_F16, out, ldo, alpha);
    }
}
