/*
** attn.c -- the softmax and value product of attention in float, for the
** CPU's attention kernels (ops/sdpa.c's nu_fa_run, which aten SDPA and
** petrel.sdpa_cache take; their double loops stay the reference and redo
** a call this leaves non-finite).  A row of scores s_j becomes weights
** w_j = exp(s_j - max s) and the output sum_j w_j v_j / sum_j w_j, in
** float, as torch's CPU attention accumulates.  With AVX-512 the
** exponential is a polynomial on sixteen lanes (within 0.9 ulp of exp
** down to -87, measured; -inf gives exactly 0) and two rows go together,
** so each value row, converted from bf16 or f16 as it is loaded, serves
** both rows' sums; CPUs with AVX2, FMA and F16C but not AVX-512 take the
** same loops on eight lanes (head widths a multiple of 8), and a portable
** loop (expf, one row at a time) every other CPU and head width.
*/
#include <immintrin.h>
#include <math.h>

#include "fast.h"
#include "simd.h"

static bool attn_on = true, attn_float = true, attn_avx512 = true; /* the test hooks */

void cpu_fast_attn_simd(bool on) { attn_on = on; }
void cpu_fast_attn_avx512(bool on) { attn_avx512 = on; }
void cpu_fast_attn_enable(bool on) { attn_float = on; }
bool cpu_fast_attn_enabled(void) { return attn_float; }


/* Value e of row p (f32, bf16 or f16), as a float. */
static inline float vat(const void *p, int64_t e, petrel_dtype dt) {
    if (dt == PETREL_DTYPE_F32) return ((const float *)p)[e];
    return pt_half_to_f32(((const uint16_t *)p)[e], dt == PETREL_DTYPE_BF16);
}

static inline const void *vrow(const void *v, int64_t j, int64_t ldv, petrel_dtype dt) {
    return (const char *)v + j * ldv * (dt == PETREL_DTYPE_F32 ? 4 : 2);
}

/* ---- portable ---------------------------------------------------------------- */

static void row_portable(float *s, int64_t j0, int64_t j1, const void *v, int64_t ldv, petrel_dtype dt,
                         int64_t Ev, float *o) {
    float mx = -INFINITY;
    for (int64_t j = j0; j < j1; j++)
        if (s[j] > mx || isnan(s[j])) mx = s[j];
    for (int64_t e = 0; e < Ev; e++) o[e] = 0.0f;
    if (mx == -INFINITY) return; /* every column excluded (or none): zeros */
    float sum = 0.0f;
    for (int64_t j = j0; j < j1; j++) sum += (s[j] = expf(s[j] - mx));
    for (int64_t j = j0; j < j1; j++) {
        const void *vr = vrow(v, j, ldv, dt);
        for (int64_t e = 0; e < Ev; e++) o[e] += s[j] * vat(vr, e, dt);
    }
    float inv = 1.0f / sum;
    for (int64_t e = 0; e < Ev; e++) o[e] *= inv;
}

/* ---- AVX-512 ----------------------------------------------------------------- */

#define ATTN_TARGET __attribute__((target("avx512f")))
#define ATTN_INLINE static inline __attribute__((always_inline)) ATTN_TARGET

/* exp(x) on sixteen lanes: x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two
 * parts, so r is exact to float), e^r by its Taylor polynomial to r^7
 * (truncation below 6e-9), scaled by 2^n with vscalefps (overflow to inf,
 * underflow to 0).  x is first raised to -110, where e^x is below half
 * the smallest subnormal, so -inf gives 0 exactly; NaN passes through
 * (vmaxps returns its second operand when either is NaN). */
ATTN_INLINE __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x); /* 0.693359375 + -2.12194440e-4 = ln2 */
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Lanes [0, n) of a 16-lane step (n >= 16: all). */
ATTN_INLINE __mmask16 lanes(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* Row s's weights over [j0, j1) in place, and 1 / their sum (0 when every
 * column is excluded: the weights are then zeros). */
ATTN_INLINE float weights16(float *s, int64_t j0, int64_t j1) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 m = ninf;
    bool nan = false;
    for (int64_t j = j0; j < j1; j += 16) {
        __m512 x = _mm512_mask_loadu_ps(ninf, lanes(j1 - j), s + j);
        nan |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) != 0;
        m = _mm512_max_ps(m, x);
    }
    float mx = _mm512_reduce_max_ps(m);
    if (nan) mx = NAN; /* the weights and the output come out NaN, as the reference's */
    if (mx == -INFINITY) {
        for (int64_t j = j0; j < j1; j++) s[j] = 0.0f;
        return 0.0f;
    }
    __m512 vm = _mm512_set1_ps(mx), sum = _mm512_setzero_ps();
    for (int64_t j = j0; j < j1; j += 16) {
        __mmask16 k = lanes(j1 - j);
        __m512 w = exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, k, s + j), vm)); /* lanes past j1: 0 */
        _mm512_mask_storeu_ps(s + j, k, w);
        sum = _mm512_add_ps(sum, w);
    }
    return 1.0f / _mm512_reduce_add_ps(sum);
}

/* Sixteen values from e on, as floats. */
ATTN_INLINE __m512 load16(const void *p, int64_t e, petrel_dtype dt) {
    if (dt == PETREL_DTYPE_F32) return _mm512_loadu_ps((const float *)p + e);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + e));
    if (dt == PETREL_DTYPE_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* Columns e0 .. e0 + 16 NV of R (1 or 2) rows' outputs: sum_j w_j v_j over
 * [j0, j1), times inv.  NV and R are constants once inlined, so the 2 NV
 * sums stay in registers. */
ATTN_INLINE void pv16(int R, int NV, const float *w0, const float *w1, int64_t j0, int64_t j1, const void *v,
                      int64_t ldv, petrel_dtype dt, int64_t e0, float *o0, float *o1, float inv0, float inv1) {
    __m512 a0[8], a1[8];
#pragma GCC unroll 8
    for (int u = 0; u < NV; u++) a0[u] = a1[u] = _mm512_setzero_ps();
    for (int64_t j = j0; j < j1; j++) {
        const void *vr = vrow(v, j, ldv, dt);
        __m512 p0 = _mm512_set1_ps(w0[j]), p1 = R == 2 ? _mm512_set1_ps(w1[j]) : p0;
#pragma GCC unroll 8
        for (int u = 0; u < NV; u++) {
            __m512 x = load16(vr, e0 + 16 * u, dt);
            a0[u] = _mm512_fmadd_ps(p0, x, a0[u]);
            if (R == 2) a1[u] = _mm512_fmadd_ps(p1, x, a1[u]);
        }
    }
#pragma GCC unroll 8
    for (int u = 0; u < NV; u++) {
        _mm512_storeu_ps(o0 + e0 + 16 * u, _mm512_mul_ps(a0[u], _mm512_set1_ps(inv0)));
        if (R == 2) _mm512_storeu_ps(o1 + e0 + 16 * u, _mm512_mul_ps(a1[u], _mm512_set1_ps(inv1)));
    }
}

/* pv16 over all Ev (a multiple of 16) columns: steps of 8, 4, 2 and 1
 * vectors. */
ATTN_INLINE void pv_rows(int R, const float *w0, const float *w1, int64_t j0, int64_t j1, const void *v,
                         int64_t ldv, petrel_dtype dt, int64_t Ev, float *o0, float *o1, float inv0, float inv1) {
    int64_t e = 0;
    for (; e + 128 <= Ev; e += 128) pv16(R, 8, w0, w1, j0, j1, v, ldv, dt, e, o0, o1, inv0, inv1);
    if (e + 64 <= Ev) pv16(R, 4, w0, w1, j0, j1, v, ldv, dt, e, o0, o1, inv0, inv1), e += 64;
    if (e + 32 <= Ev) pv16(R, 2, w0, w1, j0, j1, v, ldv, dt, e, o0, o1, inv0, inv1), e += 32;
    if (e + 16 <= Ev) pv16(R, 1, w0, w1, j0, j1, v, ldv, dt, e, o0, o1, inv0, inv1);
}

/* Rows go two at a time over the union of their column ranges [u0, u1),
 * each row's weights outside its own range set to 0: pair_ranges gives
 * the ranges of rows r and r + 1 (an empty one joins the other's),
 * pair_union zeroes those weights once they are computed. */
static inline void pair_ranges(const int32_t *j0, const int32_t *j1, int64_t r, int64_t *a0, int64_t *a1,
                               int64_t *b0, int64_t *b1) {
    *a0 = j0[r], *a1 = j1[r], *b0 = j0[r + 1], *b1 = j1[r + 1];
    if (*a1 <= *a0) *a0 = *b0, *a1 = *b0;
    if (*b1 <= *b0) *b0 = *a0, *b1 = *a0;
}
static inline void pair_union(float *s0, float *s1, int64_t a0, int64_t a1, int64_t b0, int64_t b1, int64_t *u0,
                              int64_t *u1) {
    *u0 = a0 < b0 ? a0 : b0, *u1 = a1 > b1 ? a1 : b1;
    for (int64_t j = *u0; j < *u1; j++) {
        if (j < a0 || j >= a1) s0[j] = 0.0f;
        if (j < b0 || j >= b1) s1[j] = 0.0f;
    }
}

ATTN_INLINE void rows_avx512(int64_t M, float *s, int64_t lds, const int32_t *j0, const int32_t *j1,
                             const void *v, int64_t ldv, petrel_dtype dt, int64_t Ev, float *out, int64_t ldo) {
    int64_t r = 0, a0, a1, b0, b1, u0, u1;
    for (; r + 2 <= M; r += 2) {
        float *s0 = s + r * lds, *s1 = s0 + lds;
        pair_ranges(j0, j1, r, &a0, &a1, &b0, &b1);
        float i0 = weights16(s0, a0, a1), i1 = weights16(s1, b0, b1);
        pair_union(s0, s1, a0, a1, b0, b1, &u0, &u1);
        pv_rows(2, s0, s1, u0, u1, v, ldv, dt, Ev, out + r * ldo, out + (r + 1) * ldo, i0, i1);
    }
    if (r < M) {
        float *s0 = s + r * lds;
        a0 = j0[r], a1 = j1[r] > j0[r] ? j1[r] : j0[r];
        float i0 = weights16(s0, a0, a1);
        pv_rows(1, s0, s0, a0, a1, v, ldv, dt, Ev, out + r * ldo, out + r * ldo, i0, i0);
    }
}

ATTN_TARGET static void softmax_pv_avx512(int64_t M, float *s, int64_t lds, const int32_t *j0, const int32_t *j1,
                                          const void *v, int64_t ldv, petrel_dtype dt, int64_t Ev, float *out,
                                          int64_t ldo) {
    if (dt == PETREL_DTYPE_BF16) rows_avx512(M, s, lds, j0, j1, v, ldv, PETREL_DTYPE_BF16, Ev, out, ldo);
    else if (dt == PETREL_DTYPE_F16) rows_avx512(M, s, lds, j0, j1, v, ldv, PETREL_DTYPE_F16, Ev, out, ldo);
    else rows_avx512(M, s, lds, j0, j1, v, ldv, PETREL_DTYPE_F32, Ev, out, ldo);
}

/* ---- AVX2 -------------------------------------------------------------------- */

/* The same on eight lanes for CPUs with AVX2, FMA and F16C but not
 * AVX-512 (and head widths that are a multiple of 8 only): the same
 * polynomial, 2^n made from its exponent bits (no vscalefps), so e^x is
 * 0 below -87.33, where it would fall under the smallest normal float (a
 * weight that small cannot move a sum that holds the row's largest
 * weight, 1). */

#define A2_TARGET __attribute__((target("avx2,fma,f16c")))
#define A2_INLINE static inline __attribute__((always_inline)) A2_TARGET

A2_INLINE __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ); /* NaN: false, passes through */
    x = _mm256_max_ps(lo, x);                               /* NaN x stays NaN (second operand) */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n for n in [-126, 128] (x <= 0 in a softmax: n <= 0) */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* The first n (>= 8: all) of eight lanes, as a load / store mask. */
A2_INLINE __m256i lanes8(int64_t n) {
    const int k = n >= 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

A2_INLINE float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* weights16 on eight lanes. */
A2_INLINE float weights8(float *s, int64_t j0, int64_t j1) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 m = ninf;
    bool nan = false;
    for (int64_t j = j0; j < j1; j += 8) {
        const __m256i k = lanes8(j1 - j);
        __m256 x = _mm256_blendv_ps(ninf, _mm256_maskload_ps(s + j, k), _mm256_castsi256_ps(k));
        nan |= _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0;
        m = _mm256_max_ps(m, x);
    }
    float mx = hmax8(m);
    if (nan) mx = NAN; /* the weights and the output come out NaN, as the reference's */
    if (mx == -INFINITY) {
        for (int64_t j = j0; j < j1; j++) s[j] = 0.0f;
        return 0.0f;
    }
    __m256 vm = _mm256_set1_ps(mx), sum = _mm256_setzero_ps();
    for (int64_t j = j0; j < j1; j += 8) {
        const __m256i k = lanes8(j1 - j);
        __m256 x = _mm256_blendv_ps(ninf, _mm256_maskload_ps(s + j, k), _mm256_castsi256_ps(k));
        __m256 w = exp8(_mm256_sub_ps(x, vm)); /* lanes past j1: 0 */
        _mm256_maskstore_ps(s + j, k, w);
        sum = _mm256_add_ps(sum, w);
    }
    return 1.0f / fast_hsum256(sum);
}

/* Eight values from e on, as floats. */
A2_INLINE __m256 load8(const void *p, int64_t e, petrel_dtype dt) {
    if (dt == PETREL_DTYPE_F32) return _mm256_loadu_ps((const float *)p + e);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + e));
    if (dt == PETREL_DTYPE_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* pv16 on eight lanes (NV <= 4: sixteen vector registers). */
A2_INLINE void pv8(int R, int NV, const float *w0, const float *w1, int64_t j0, int64_t j1, const void *v,
                   int64_t ldv, petrel_dtype dt, int64_t e0, float *o0, float *o1, float inv0, float inv1) {
    __m256 a0[4], a1[4];
    for (int u = 0; u < NV; u++) a0[u] = a1[u] = _mm256_setzero_ps();
    for (int64_t j = j0; j < j1; j++) {
        const void *vr = vrow(v, j, ldv, dt);
        __m256 p0 = _mm256_set1_ps(w0[j]), p1 = R == 2 ? _mm256_set1_ps(w1[j]) : p0;
        for (int u = 0; u < NV; u++) {
            __m256 x = load8(vr, e0 + 8 * u, dt);
            a0[u] = _mm256_fmadd_ps(p0, x, a0[u]);
            if (R == 2) a1[u] = _mm256_fmadd_ps(p1, x, a1[u]);
        }
    }
    for (int u = 0; u < NV; u++) {
        _mm256_storeu_ps(o0 + e0 + 8 * u, _mm256_mul_ps(a0[u], _mm256_set1_ps(inv0)));
        if (R == 2) _mm256_storeu_ps(o1 + e0 + 8 * u, _mm256_mul_ps(a1[u], _mm256_set1_ps(inv1)));
    }
}

A2_INLINE void pv_rows8(int R, const float *w0, const float *w1, int64_t j0, int64_t j1, const void *v,
                        int64_t ldv, petrel_dtype dt, int64_t Ev, float *o0, float *o1, float inv0, float inv1) {
    int64_t e = 0;
    for (; e + 32 <= Ev; e += 32) pv8(R, 4, w0, w1, j0, j1, v, ldv, dt, e, o0, o1, inv0, inv1);
    if (e + 16 <= Ev) pv8(R, 2, w0, w1, j0, j1, v, ldv, dt, e, o0, o1, inv0, inv1), e += 16;
    if (e + 8 <= Ev) pv8(R, 1, w0, w1, j0, j1, v, ldv, dt, e, o0, o1, inv0, inv1);
}

/* rows_avx512 on eight lanes. */
A2_INLINE void rows_avx2(int64_t M, float *s, int64_t lds, const int32_t *j0, const int32_t *j1, const void *v,
                         int64_t ldv, petrel_dtype dt, int64_t Ev, float *out, int64_t ldo) {
    int64_t r = 0, a0, a1, b0, b1, u0, u1;
    for (; r + 2 <= M; r += 2) {
        float *s0 = s + r * lds, *s1 = s0 + lds;
        pair_ranges(j0, j1, r, &a0, &a1, &b0, &b1);
        float i0 = weights8(s0, a0, a1), i1 = weights8(s1, b0, b1);
        pair_union(s0, s1, a0, a1, b0, b1, &u0, &u1);
        pv_rows8(2, s0, s1, u0, u1, v, ldv, dt, Ev, out + r * ldo, out + (r + 1) * ldo, i0, i1);
    }
    if (r < M) {
        float *s0 = s + r * lds;
        a0 = j0[r], a1 = j1[r] > j0[r] ? j1[r] : j0[r];
        float i0 = weights8(s0, a0, a1);
        pv_rows8(1, s0, s0, a0, a1, v, ldv, dt, Ev, out + r * ldo, out + r * ldo, i0, i0);
    }
}

A2_TARGET static void softmax_pv_avx2(int64_t M, float *s, int64_t lds, const int32_t *j0, const int32_t *j1,
                                      const void *v, int64_t ldv, petrel_dtype dt, int64_t Ev, float *out,
                                      int64_t ldo) {
    if (dt == PETREL_DTYPE_BF16) rows_avx2(M, s, lds, j0, j1, v, ldv, PETREL_DTYPE_BF16, Ev, out, ldo);
    else if (dt == PETREL_DTYPE_F16) rows_avx2(M, s, lds, j0, j1, v, ldv, PETREL_DTYPE_F16, Ev, out, ldo);
    else rows_avx2(M, s, lds, j0, j1, v, ldv, PETREL_DTYPE_F32, Ev, out, ldo);
}

void cpu_fast_softmax_pv(int64_t M, float *s, int64_t lds, const int32_t *j0, const int32_t *j1, const void *v,
                         int64_t ldv, petrel_dtype vdt, int64_t Ev, float *out, int64_t ldo) {
    if (attn_on && attn_avx512 && Ev % 16 == 0 && fast_have_avx512()) {
        softmax_pv_avx512(M, s, lds, j0, j1, v, ldv, vdt, Ev, out, ldo);
        return;
    }
    if (attn_on && Ev % 8 == 0 && fast_have_avx2()) {
        softmax_pv_avx2(M, s, lds, j0, j1, v, ldv, vdt, Ev, out, ldo);
        return;
    }
    for (int64_t r = 0; r < M; r++) row_portable(s + r * lds, j0[r], j1[r], v, ldv, vdt, Ev, out + r * ldo);
}
