/*
** qmm.c -- products with quantized weights (petrel.qlinear; ops/quant.c is
** the reference and the caller), AVX-512F, or AVX2 with FMA and F16C.
** Codes are read 16 bytes at a time and turned into their float weights
** in registers, never stored for decode (M = 1):
**   int8, int8s: w = (u - zp') * s on 16 lanes (zp' = zp - qmin);
**   4- and 2-bit codes and nvfp4: one vpermps looks 16 weights up in a
**   16-entry table per group, (u - zp') * s, or e2m1(u) * e4m3(s) * t, so
**   a group costs two multiplies, not one per weight.
** Either way w is the float ops.def defines (the reference's q_row gives
** the same bits), and it meets x in a float FMA.  The lanes of one vector
** hold one code position of 16 consecutive bytes (byte i's low nibble,
** then its high nibble, ...), so x is reordered once per call to match
** (cpu_fast_qmm_prep).  Four weight rows go together, sharing each load
** of x and keeping four independent accumulators in flight, and they
** prefetch the codes of the next four (the hardware prefetcher alone left
** int8 at half the DRAM bandwidth: measured 8 vs 17 GB/s).  With bf16
** scales, decode converts 16 groups' scales and zero points of each row
** at a time as it reaches them (qmm_win), where a pass per row first
** converted them into arrays (row_params; 10 % of a decode step).
** Prefill (M > 1) dequantizes 16 rows at a time into a buffer and reuses
** the f32 GEMM, so each code is decoded once per call there too.
** Single-threaded, like the f32 GEMM.  CPUs with AVX2, FMA and F16C but
** not AVX-512 take 8-lane versions of the same loops (the AVX2 section
** below).
*/
#include <immintrin.h>
#include <string.h>

#include "../../../core/quant_fmt.h"
#include "fast.h"
#include "simd.h"

#define QMM_TARGET __attribute__((target("avx512f")))
#define QMM_INLINE static inline __attribute__((always_inline)) QMM_TARGET

enum {
    QMM_DQ_ROWS = 16, /* rows dequantized per GEMM call (M > 1) */
    QMM_MAX_ROWS = 4  /* rows per step of the M = 1 loop */
};

static bool qmm_on = true, qmm_avx512 = true; /* the test hooks: tests only */

void cpu_fast_qmm_enable(bool on) { qmm_on = on; }
void cpu_fast_qmm_avx512(bool on) { qmm_avx512 = on; }

static bool use_avx512(void) { return qmm_avx512 && fast_have_avx512(); }

/* Codes per byte: 1, 2 or 4.  A 16-byte block holds 16 * per_byte codes. */
static int per_byte(int fmt) { return 8 / pt_qfmt_bits((pt_qfmt)fmt); }

/* Two groups in every block (G is half a block: int4 and nvfp4 at 16,
 * 2-bit codes at 32). */
static bool half_groups(const cpu_qweight *w) {
    int e = per_byte(w->fmt);
    return e > 1 && w->G == 8 * e;
}

bool cpu_fast_qmm_ok(const cpu_qweight *w) {
    int64_t blk = 16 * per_byte(w->fmt), ng = w->G > 0 ? w->K / w->G : 0;
    bool sdt_ok = w->fmt == PT_QFMT_NVFP4 ? w->sdt == PETREL_DTYPE_U8
                                          : w->sdt == PETREL_DTYPE_F32 || w->sdt == PETREL_DTYPE_BF16 ||
                                                w->sdt == PETREL_DTYPE_F16;
    return qmm_on && (fast_have_avx512() || fast_have_avx2()) && sdt_ok && w->K > 0 && w->K % blk == 0 &&
           (w->G % blk == 0 || half_groups(w)) && (w->s_cs == 1 || ng == 1) &&
           (!w->zeros || w->z_cs == 1 || ng == 1);
}

int64_t cpu_fast_qmm_work(const cpu_qweight *w, int64_t M) {
    /* per-row group scales and zero points for a step of rows, plus the
     * dequantized rows of a prefill */
    return 2 * QMM_MAX_ROWS * (w->K / w->G) + (M > 1 ? QMM_DQ_ROWS * w->K : 0);
}

void cpu_fast_qmm_prep(int fmt, int64_t M, int64_t K, float *x) {
    int e = per_byte(fmt);
    if (e == 1) return;
    float tmp[64];
    for (int64_t b = 0; b < M * K; b += 16 * e) {
        for (int i = 0; i < 16; i++)
            for (int p = 0; p < e; p++) tmp[p * 16 + i] = x[b + i * e + p];
        memcpy(x + b, tmp, sizeof(float) * 16 * (size_t)e);
    }
}

/* ---- per-row group parameters ------------------------------------------- */

/* Scale of group g of a row whose scales start at srow, as float. */
static float scale_at(const cpu_qweight *w, const uint8_t *srow, int64_t g) {
    const uint8_t *p = srow + g * w->s_cs * (int64_t)petrel_dtype_size(w->sdt);
    uint16_t h;
    float f;
    switch (w->sdt) {
    case PETREL_DTYPE_F32: memcpy(&f, p, 4); return f;
    case PETREL_DTYPE_BF16: memcpy(&h, p, 2); return pt_bf16_to_f32(h);
    case PETREL_DTYPE_F16: memcpy(&h, p, 2); return pt_f16_to_f32(h);
    default: return pt_e4m3_to_float(*p); /* nvfp4 */
    }
}

/* 16 E4M3 bytes as floats: pt_e4m3_to_float on every lane. */
QMM_INLINE __m512 e4m3x16(const uint8_t *p) {
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    __m512i mag = _mm512_and_si512(b, _mm512_set1_epi32(0x7f));
    __m512i normal = _mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23));
    __m512 sub = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(0.001953125f)); /* m * 2^-9 */
    __m512i v = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(8)), normal,
                                        _mm512_castps_si512(sub));
    v = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7f)), v,
                                _mm512_set1_epi32(0x7fc00000));
    return _mm512_castsi512_ps(_mm512_or_si512(v, _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24)));
}

/* sf[g] = scale of group g of row n in float (nvfp4: E4M3 decoded, t not
 * applied), zf[g] = zp - qmin (zp = 0 for symmetric formats). */
QMM_TARGET static void row_params(const cpu_qweight *w, int64_t n, float *sf, float *zf) {
    int64_t ng = w->K / w->G, g = 0;
    const uint8_t *s = w->scales + n * w->s_rs * (int64_t)petrel_dtype_size(w->sdt);
    for (; g + 16 <= ng; g += 16) {
        __m512 v;
        switch (w->sdt) {
        case PETREL_DTYPE_F32: v = _mm512_loadu_ps((const float *)s + g); break;
        case PETREL_DTYPE_BF16:
            v = _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)s + g))), 16));
            break;
        case PETREL_DTYPE_F16: v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)s + g))); break;
        default: v = e4m3x16(s + g); break;
        }
        _mm512_storeu_ps(sf + g, v);
    }
    for (; g < ng; g++) sf[g] = scale_at(w, s, g);
    int qmin = pt_qfmt_qmin((pt_qfmt)w->fmt);
    g = 0;
    if (w->zeros) {
        const int8_t *z = w->zeros + n * w->z_rs;
        for (; g + 16 <= ng; g += 16) {
            __m512i zi = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(z + g)));
            _mm512_storeu_ps(zf + g, _mm512_cvtepi32_ps(_mm512_sub_epi32(zi, _mm512_set1_epi32(qmin))));
        }
        for (; g < ng; g++) zf[g] = (float)(z[g * w->z_cs] - qmin);
    }
    for (; g < ng; g++) zf[g] = (float)-qmin;
}

/* ---- the row loop ------------------------------------------------------- */

/* What the row loop needs besides the rows. */
typedef struct qmm_ctx {
    int64_t K, G;
    int64_t ahead;  /* bytes from a row's codes to the same place in the rows of the next step */
    bool fp4;       /* table = base * s * t, else (base - zp') * s */
    bool raw;       /* bf16 scales and int8 zero points read from the weight (sb, zb), not from sf, zf */
    int qmin;
    float t;
    float base[16]; /* table entry u before scaling: e2m1(u), or u's code value (u mod 2^bits) */
} qmm_ctx;

/* Up to QMM_MAX_ROWS weight rows: codes, per-group params, and (dequantizing) where the row goes. */
typedef struct qmm_rows {
    const uint8_t *c[QMM_MAX_ROWS];
    const float *sf[QMM_MAX_ROWS], *zf[QMM_MAX_ROWS];
    const uint16_t *sb[QMM_MAX_ROWS]; /* raw: the row's bf16 scales */
    const int8_t *zb[QMM_MAX_ROWS];   /* raw: its zero points, or NULL */
    float *w[QMM_MAX_ROWS];
} qmm_rows;

/* Row r's scale and zp - qmin of group g: row_params' values, from its
 * arrays or (raw) straight from the weight's bytes. */
static inline float row_s(const qmm_ctx *q, const qmm_rows *rows, int r, int64_t g) {
    return q->raw ? pt_bf16_to_f32(rows->sb[r][g]) : rows->sf[r][g];
}
static inline float row_z(const qmm_ctx *q, const qmm_rows *rows, int r, int64_t g) {
    if (!q->raw) return rows->zf[r][g];
    return (float)((rows->zb[r] ? rows->zb[r][g] : 0) - q->qmin);
}

/* The 16-entry table of one group, from its scale and zp - qmin on every
 * lane. */
QMM_INLINE __m512 group_table(const qmm_ctx *q, __m512 base, __m512 sv, __m512 zv) {
    if (q->fp4) return _mm512_mul_ps(_mm512_mul_ps(base, sv), _mm512_set1_ps(q->t));
    return _mm512_mul_ps(_mm512_sub_ps(base, zv), sv);
}

/* The raw group parameters (bf16 scales, int8 zero points) of 16 groups
 * of each row from group g0 on, as floats (row_s, row_z): one vector load
 * and conversion per row and 16 groups, stored here, then a broadcast
 * load per group (win_get; a load, not a shuffle: the loop's shuffles,
 * the code bytes' widening and the table lookups, all take one port),
 * where a scalar load, conversion and shuffle broadcast per group and row
 * took a quarter of an int4 decode with groups of 32. */
typedef struct qmm_win {
    _Alignas(64) float s[QMM_MAX_ROWS][16];
    _Alignas(64) float z[QMM_MAX_ROWS][16];
    int64_t g0;
} qmm_win;

QMM_INLINE void win_load(const qmm_ctx *q, const qmm_rows *rows, int R, int64_t g0, qmm_win *w) {
    const int64_t ng = q->K / q->G;
    w->g0 = g0;
    for (int r = 0; r < R; r++) {
        if (g0 + 16 > ng) { /* the row's last groups */
            for (int64_t g = g0; g < ng; g++) w->s[r][g - g0] = row_s(q, rows, r, g);
            for (int64_t g = g0; g < ng; g++) w->z[r][g - g0] = row_z(q, rows, r, g);
            continue;
        }
        const __m512i sb = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(rows->sb[r] + g0)));
        _mm512_store_ps(w->s[r], _mm512_castsi512_ps(_mm512_slli_epi32(sb, 16)));
        if (rows->zb[r]) {
            const __m512i zb = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(rows->zb[r] + g0)));
            _mm512_store_ps(w->z[r], _mm512_cvtepi32_ps(_mm512_sub_epi32(zb, _mm512_set1_epi32(q->qmin))));
        } else {
            _mm512_store_ps(w->z[r], _mm512_set1_ps((float)-q->qmin));
        }
    }
}

/* Row r's scale and zp - qmin of group g on every lane: from the window
 * (raw; g in its 16), else from sf and zf; broadcast loads either way. */
QMM_INLINE void win_get(bool raw, const qmm_rows *rows, const qmm_win *w, int r, int64_t g, __m512 *sv,
                        __m512 *zv) {
    if (!raw) {
        *sv = _mm512_set1_ps(rows->sf[r][g]), *zv = _mm512_set1_ps(rows->zf[r][g]);
        return;
    }
    *sv = _mm512_set1_ps(w->s[r][g - w->g0]), *zv = _mm512_set1_ps(w->z[r][g - w->g0]);
}

/* R rows over all of K, e codes per byte, `half`: two groups per block.
 * Dot products with x into res[r] (store false), or the dequantized rows
 * written to rows->w[r] in x's block order (store true); raw: the group
 * parameters come from the weight's bf16 scales (qmm_win), else from sf
 * and zf.  Constant arguments: each caller below is one specialization. */
QMM_INLINE void qmm_run(const qmm_ctx *q, int e, bool half, int R, bool store, bool raw, const qmm_rows *rows,
                        const float *x, float *res) {
    const int bits = 8 / e;
    const int64_t blk = 16 * e;
    const __m512 base = _mm512_loadu_ps(q->base);
    const __m512i low4 = _mm512_set1_epi32(15);
    /* lanes 8-15 read the second table (bit 4 of vpermt2ps' index) */
    const __m512i second = _mm512_set_epi32(16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc[QMM_MAX_ROWS][4], ta[QMM_MAX_ROWS], tb[QMM_MAX_ROWS];
    for (int r = 0; r < R; r++) {
        for (int p = 0; p < e; p++) acc[r][p] = _mm512_setzero_ps();
        ta[r] = tb[r] = _mm512_setzero_ps();
    }
    int64_t g = 0, gnext = 0;
    qmm_win win;
    win.g0 = -16; /* loaded at the first group */
    for (int64_t k0 = 0, off = 0; k0 < q->K; k0 += blk, off += 16) {
        if (half || k0 == gnext) {
            if (raw && g - win.g0 >= 16) win_load(q, rows, R, g, &win); /* 16 is even: g, g + 1 share it */
            for (int r = 0; r < R; r++) {
                __m512 sv, zv;
                win_get(raw, rows, &win, r, g, &sv, &zv);
                if (e == 1) { /* int8: ta = s, tb = zp' */
                    ta[r] = sv, tb[r] = zv;
                } else {
                    ta[r] = group_table(q, base, sv, zv);
                }
                if (half) {
                    win_get(raw, rows, &win, r, g + 1, &sv, &zv);
                    tb[r] = group_table(q, base, sv, zv);
                }
            }
            g += half ? 2 : 1;
            gnext += q->G;
        }
        __m512 xv[4];
        for (int p = 0; p < e && !store; p++) xv[p] = _mm512_loadu_ps(x + k0 + 16 * p);
        for (int r = 0; r < R; r++) {
            if (!store && (off & 63) == 0) _mm_prefetch((const char *)(rows->c[r] + q->ahead + off), _MM_HINT_T0);
            __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(rows->c[r] + off)));
            __m512 wv[4];
            if (e == 1) {
                wv[0] = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(d), tb[r]), ta[r]);
            } else {
                for (int p = 0; p < e; p++) {
                    __m512i idx = p ? _mm512_srl_epi32(d, _mm_cvtsi32_si128(p * bits)) : d;
                    /* vpermps reads the index's low 4 bits: a nibble, or a 2-bit code
                     * and its neighbour (the 2-bit tables repeat every 4 entries) */
                    wv[p] = half ? _mm512_permutex2var_ps(ta[r], _mm512_ternarylogic_epi32(idx, low4, second, 0xEA),
                                                          tb[r])
                                 : _mm512_permutexvar_ps(idx, ta[r]);
                }
            }
            for (int p = 0; p < e; p++) {
                if (store)
                    _mm512_storeu_ps(rows->w[r] + k0 + 16 * p, wv[p]);
                else
                    acc[r][p] = _mm512_fmadd_ps(xv[p], wv[p], acc[r][p]);
            }
        }
    }
    for (int r = 0; r < R && !store; r++) {
        __m512 s = acc[r][0];
        for (int p = 1; p < e; p++) s = _mm512_add_ps(s, acc[r][p]);
        res[r] = _mm512_reduce_add_ps(s);
    }
}

typedef void (*qmm_fn)(const qmm_ctx *q, const qmm_rows *rows, const float *x, float *res);

#define QMM_SPECIAL(name, e, half, R, store, raw)                                                        \
    QMM_TARGET static void name(const qmm_ctx *q, const qmm_rows *rows, const float *x, float *res) {     \
        qmm_run(q, e, half, R, store, raw, rows, x, res);                                                 \
    }
/* decode, group parameters from sf / zf (nvfp4, scales not bf16) */
QMM_SPECIAL(dot8_4, 1, false, 4, false, false)
QMM_SPECIAL(dot8_1, 1, false, 1, false, false)
QMM_SPECIAL(dot4_4, 2, false, 4, false, false)
QMM_SPECIAL(dot4_1, 2, false, 1, false, false)
QMM_SPECIAL(dot4h_4, 2, true, 4, false, false)
QMM_SPECIAL(dot4h_1, 2, true, 1, false, false)
QMM_SPECIAL(dot2_2, 4, false, 2, false, false)
QMM_SPECIAL(dot2_1, 4, false, 1, false, false)
QMM_SPECIAL(dot2h_2, 4, true, 2, false, false)
QMM_SPECIAL(dot2h_1, 4, true, 1, false, false)
/* decode, raw bf16 scales and int8 zero points (qmm_win) */
QMM_SPECIAL(dot8_4r, 1, false, 4, false, true)
QMM_SPECIAL(dot8_1r, 1, false, 1, false, true)
QMM_SPECIAL(dot4_4r, 2, false, 4, false, true)
QMM_SPECIAL(dot4_1r, 2, false, 1, false, true)
QMM_SPECIAL(dot4h_4r, 2, true, 4, false, true)
QMM_SPECIAL(dot4h_1r, 2, true, 1, false, true)
QMM_SPECIAL(dot2_2r, 4, false, 2, false, true)
QMM_SPECIAL(dot2_1r, 4, false, 1, false, true)
QMM_SPECIAL(dot2h_2r, 4, true, 2, false, true)
QMM_SPECIAL(dot2h_1r, 4, true, 1, false, true)
/* prefill: dequantize one row */
QMM_SPECIAL(deq8, 1, false, 1, true, false)
QMM_SPECIAL(deq4, 2, false, 1, true, false)
QMM_SPECIAL(deq4h, 2, true, 1, true, false)
QMM_SPECIAL(deq2, 4, false, 1, true, false)
QMM_SPECIAL(deq2h, 4, true, 1, true, false)

/* ---- AVX2 ---------------------------------------------------------------- */

/* The same products on 8 lanes for CPUs with AVX2, FMA and F16C but not
 * AVX-512: a vector holds one code position of 8 consecutive bytes, half
 * of a 16-byte block, so x's layout from cpu_fast_qmm_prep serves both
 * (positions p of a block's bytes 0-7, then of bytes 8-15).  A half
 * block lies inside one group (G is a multiple of its 8 * e codes, as
 * cpu_fast_qmm_ok requires).  Integer weights are (u - zp') * s, the
 * subtraction in integers; nvfp4's e2m1(u) * s * t is the group's entry
 * |e2m1| * s * t for the code's magnitude (one 8-entry permute) with the
 * code's sign bit put on it (IEEE products are symmetric in sign, so that
 * is the same float); either way w is the float ops.def defines, the bits
 * of the reference's q_row, and it meets x in a float FMA.  Two weight
 * rows go together (sixteen vector registers), prefetching the codes of
 * the next two. */
#define Q2_TARGET __attribute__((target("avx2,fma,f16c")))
#define Q2_INLINE static inline __attribute__((always_inline)) Q2_TARGET

enum { Q2_ROWS = 2 };

/* R rows over all of K, e codes per byte, nvfp4 (fp4) or an integer
 * format: dot products with x into res[r], or (store) the dequantized
 * rows written to rows->w[r] in x's block order.  Constant arguments:
 * each caller below is one specialization. */
Q2_INLINE void qmm2_run(const qmm_ctx *q, int e, bool fp4, int R, bool store, const qmm_rows *rows, const float *x,
                        float *res) {
    const int bits = 8 / e;
    const int64_t blk = 16 * e, hc = 8 * e; /* codes per block, per half block */
    const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
    const __m256 mag = _mm256_loadu_ps(q->base); /* nvfp4: e2m1 of codes 0-7, the magnitudes */
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    __m256 acc[Q2_ROWS][4], sv[Q2_ROWS], tab[Q2_ROWS];
    __m256i zv[Q2_ROWS];
    for (int r = 0; r < R; r++) {
        for (int p = 0; p < e; p++) acc[r][p] = _mm256_setzero_ps();
        sv[r] = tab[r] = _mm256_setzero_ps();
        zv[r] = _mm256_setzero_si256();
    }
    int64_t g = 0, gnext = 0;
    for (int64_t k0 = 0, off = 0; k0 < q->K; k0 += blk, off += 16) {
        for (int h = 0; h < 2; h++) {
            if (k0 + h * hc == gnext) { /* a new group */
                for (int r = 0; r < R; r++) {
                    const float sc = row_s(q, rows, r, g);
                    if (fp4) {
                        tab[r] = _mm256_mul_ps(_mm256_mul_ps(mag, _mm256_set1_ps(sc)), _mm256_set1_ps(q->t));
                    } else {
                        sv[r] = _mm256_set1_ps(sc);
                        zv[r] = _mm256_set1_epi32((int)row_z(q, rows, r, g));
                    }
                }
                g++;
                gnext += q->G;
            }
            __m256 xv[4];
            for (int p = 0; p < e && !store; p++) xv[p] = _mm256_loadu_ps(x + k0 + 16 * p + 8 * h);
            for (int r = 0; r < R; r++) {
                if (!store && h == 0 && (off & 63) == 0)
                    _mm_prefetch((const char *)(rows->c[r] + q->ahead + off), _MM_HINT_T0);
                const __m256i d = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(rows->c[r] + off + 8 * h)));
                for (int p = 0; p < e; p++) {
                    __m256i u = p ? _mm256_srl_epi32(d, _mm_cvtsi32_si128(p * bits)) : d;
                    if (e > 1) u = _mm256_and_si256(u, mask);
                    __m256 w;
                    if (fp4) { /* the magnitude's entry (index bits 0-2), then code bit 3 as the sign */
                        const __m256i sb = _mm256_and_si256(_mm256_slli_epi32(u, 28), sign);
                        w = _mm256_xor_ps(_mm256_permutevar8x32_ps(tab[r], u), _mm256_castsi256_ps(sb));
                    } else {
                        w = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(u, zv[r])), sv[r]);
                    }
                    if (store)
                        _mm256_storeu_ps(rows->w[r] + k0 + 16 * p + 8 * h, w);
                    else
                        acc[r][p] = _mm256_fmadd_ps(xv[p], w, acc[r][p]);
                }
            }
        }
    }
    for (int r = 0; r < R && !store; r++) {
        __m256 t = acc[r][0];
        for (int p = 1; p < e; p++) t = _mm256_add_ps(t, acc[r][p]);
        res[r] = fast_hsum256(t);
    }
}

#define Q2_SPECIAL(name, e, fp4, R, store)                                                                \
    Q2_TARGET static void name(const qmm_ctx *q, const qmm_rows *rows, const float *x, float *res) {     \
        qmm2_run(q, e, fp4, R, store, rows, x, res);                                                      \
    }
Q2_SPECIAL(dot8_2x, 1, false, 2, false)
Q2_SPECIAL(dot8_1x, 1, false, 1, false)
Q2_SPECIAL(dot4_2x, 2, false, 2, false)
Q2_SPECIAL(dot4_1x, 2, false, 1, false)
Q2_SPECIAL(dotf4_2x, 2, true, 2, false)
Q2_SPECIAL(dotf4_1x, 2, true, 1, false)
Q2_SPECIAL(dot2_2x, 4, false, 2, false)
Q2_SPECIAL(dot2_1x, 4, false, 1, false)
Q2_SPECIAL(deq8x, 1, false, 1, true)
Q2_SPECIAL(deq4x, 2, false, 1, true)
Q2_SPECIAL(deqf4x, 2, true, 1, true)
Q2_SPECIAL(deq2x, 4, false, 1, true)

/* 8 E4M3 bytes as floats: pt_e4m3_to_float on every lane (e4m3x16's
 * steps on 8 lanes). */
Q2_INLINE __m256 e4m3x8(const uint8_t *p) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    const __m256i mag = _mm256_and_si256(b, _mm256_set1_epi32(0x7f));
    const __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23));
    const __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(0.001953125f)); /* m * 2^-9 */
    __m256i v = _mm256_blendv_epi8(normal, _mm256_castps_si256(sub), _mm256_cmpgt_epi32(_mm256_set1_epi32(8), mag));
    v = _mm256_blendv_epi8(v, _mm256_set1_epi32(0x7fc00000), _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7f)));
    const __m256i sgn = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x80)), 24);
    return _mm256_castsi256_ps(_mm256_or_si256(v, sgn));
}

/* row_params on 8 lanes: the same values. */
Q2_TARGET static void row_params2(const cpu_qweight *w, int64_t n, float *sf, float *zf) {
    int64_t ng = w->K / w->G, g = 0;
    const uint8_t *s = w->scales + n * w->s_rs * (int64_t)petrel_dtype_size(w->sdt);
    for (; g + 8 <= ng; g += 8) {
        __m256 v;
        switch (w->sdt) {
        case PETREL_DTYPE_F32: v = _mm256_loadu_ps((const float *)s + g); break;
        case PETREL_DTYPE_BF16:
            v = _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)s + g))), 16));
            break;
        case PETREL_DTYPE_F16: v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)s + g))); break;
        default: v = e4m3x8(s + g); break;
        }
        _mm256_storeu_ps(sf + g, v);
    }
    for (; g < ng; g++) sf[g] = scale_at(w, s, g);
    int qmin = pt_qfmt_qmin((pt_qfmt)w->fmt);
    g = 0;
    if (w->zeros) {
        const int8_t *z = w->zeros + n * w->z_rs;
        for (; g + 8 <= ng; g += 8) {
            __m256i zi = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(z + g)));
            _mm256_storeu_ps(zf + g, _mm256_cvtepi32_ps(_mm256_sub_epi32(zi, _mm256_set1_epi32(qmin))));
        }
        for (; g < ng; g++) zf[g] = (float)(z[g * w->z_cs] - qmin);
    }
    for (; g < ng; g++) zf[g] = (float)-qmin;
}

/* Both sides of cpu_fast_qmm: the row steps (R rows, or one), their
 * group parameters (params, or the bf16 ones read in the loop) and the
 * dequantizing prefill; fn: the side's kernels for the format ([0] a step
 * of R rows, [1] one row, [2] dequantize one row). */
static void qmm_rows_loop(const cpu_qweight *w, int64_t n0, int64_t nb, int64_t M, const float *x, float *out,
                          int64_t ldo, float *work, qmm_ctx *q, qmm_fn *fn, int R,
                          void (*params)(const cpu_qweight *, int64_t, float *, float *)) {
    int64_t ng = w->K / w->G;
    float *sf = work, *zf = work + QMM_MAX_ROWS * ng, *wbuf = work + 2 * QMM_MAX_ROWS * ng;
    qmm_rows rows;
    for (int r = 0; r < QMM_MAX_ROWS; r++) {
        rows.sf[r] = sf + r * ng;
        rows.zf[r] = zf + r * ng;
    }
    if (M == 1) {
        float res[QMM_MAX_ROWS];
        for (int64_t j = 0; j < nb;) {
            int step = nb - j >= R ? R : 1;
            q->ahead = step * w->code_rs;
            for (int r = 0; r < step; r++) {
                const int64_t n = n0 + j + r;
                if (q->raw) {
                    rows.sb[r] = (const uint16_t *)w->scales + n * w->s_rs;
                    rows.zb[r] = w->zeros ? w->zeros + n * w->z_rs : NULL;
                } else {
                    params(w, n, sf + r * ng, zf + r * ng);
                }
                rows.c[r] = w->codes + n * w->code_rs;
            }
            fn[step == R ? 0 : 1](q, &rows, x, res);
            for (int r = 0; r < step; r++) out[j + r] = res[r];
            j += step;
        }
        return;
    }
    for (int64_t j0 = 0; j0 < nb; j0 += QMM_DQ_ROWS) {
        int64_t jn = nb - j0 < QMM_DQ_ROWS ? nb - j0 : QMM_DQ_ROWS;
        for (int64_t j = 0; j < jn; j++) {
            params(w, n0 + j0 + j, sf, zf);
            rows.c[0] = w->codes + (n0 + j0 + j) * w->code_rs;
            rows.w[0] = wbuf + j * w->K;
            fn[2](q, &rows, NULL, NULL);
        }
        cpu_fast_gemm_nt_f32(M, jn, w->K, x, w->K, wbuf, w->K, out + j0, ldo, 1.0f);
    }
}

void cpu_fast_qmm(const cpu_qweight *w, int64_t n0, int64_t nb, int64_t M, const float *x, float *out, int64_t ldo,
                  float *work) {
    int e = per_byte(w->fmt), bits = 8 / e;
    bool half = half_groups(w);
    qmm_ctx q = {.K = w->K, .G = w->G, .fp4 = w->fmt == PT_QFMT_NVFP4, .t = w->t,
                 .qmin = pt_qfmt_qmin((pt_qfmt)w->fmt)};
    /* decode reads bf16 scales in the loop, not first converted into sf
     * and zf per row (a pass of its own: 10 % of a decode step) */
    const bool raw = q.raw = M == 1 && w->sdt == PETREL_DTYPE_BF16 && !q.fp4;
    for (unsigned u = 0; u < 16; u++)
        q.base[u] = q.fp4 ? pt_e2m1_to_float(u) : (float)(u & ((1u << bits) - 1u));
    if (use_avx512()) {
        /* [0] a step of R rows, [1] one row, [2] dequantize one row */
        qmm_fn fns[3][3] = {{raw ? dot8_4r : dot8_4, raw ? dot8_1r : dot8_1, deq8},
                            {half ? raw ? dot4h_4r : dot4h_4 : raw ? dot4_4r : dot4_4,
                             half ? raw ? dot4h_1r : dot4h_1 : raw ? dot4_1r : dot4_1, half ? deq4h : deq4},
                            {half ? raw ? dot2h_2r : dot2h_2 : raw ? dot2_2r : dot2_2,
                             half ? raw ? dot2h_1r : dot2h_1 : raw ? dot2_1r : dot2_1, half ? deq2h : deq2}};
        qmm_rows_loop(w, n0, nb, M, x, out, ldo, work, &q, fns[e == 1 ? 0 : e == 2 ? 1 : 2], e == 4 ? 2 : 4,
                      row_params);
        return;
    }
    qmm_fn fns[4][3] = {{dot8_2x, dot8_1x, deq8x}, {dot4_2x, dot4_1x, deq4x}, {dotf4_2x, dotf4_1x, deqf4x},
                        {dot2_2x, dot2_1x, deq2x}};
    qmm_rows_loop(w, n0, nb, M, x, out, ldo, work, &q, fns[e == 1 ? 0 : e == 4 ? 3 : q.fp4 ? 2 : 1], Q2_ROWS,
                  row_params2);
}
