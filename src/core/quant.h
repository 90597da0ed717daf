/*
** quant.h -- the weight quantizer's formulas, as plain inline functions:
** float32 weights -> the codes, scales and zero points of petrel.qlinear
** and petrel.qembedding (layout and meaning: ops.def, "Quantized
** weights"; the format table, packing and decoders: quant_fmt.h).  The
** compiler's pass (compiler/quant.c) quantizes with them,
** tests/unit/test_quant.c checks them bit for bit against an independent
** torch computation, and device code may include them (PT_QFN marks them
** host + device under nvcc).  Layer: core; depends on the public header.
**
** Formulas (float32 throughout, on the weight converted to float32; per
** group g of G consecutive values along K):
**   asymmetric  lo = min(min(g), 0), hi = max(max(g), 0);
**               s = max((hi - lo) / (qmax - qmin), FLT_EPSILON), rounded to
**               the scale dtype: s_r;  zp = clamp(qmin - round(lo / s_r));
**               q = clamp(round(w / s_r) + zp)
**   symmetric   a = max(-lo, hi); s = max(a / ((qmax - qmin) / 2),
**               FLT_EPSILON) -> s_r;  zp = 0;  q = clamp(round(w / s_r))
**   nvfp4       t = amax(|W|) / (6 * 448) (1 when that is 0); per block of
**               16: s = e4m3(max|w| / 6 / t) (nearest even, saturating at
**               448); code = e2m1(w / (s * t)) (nearest, ties to the even
**               code, saturating at 6; the sign bit is w's), 0 when s == 0
** round = half to even; clamp to [qmin, qmax].  These are TorchAO's
** choose_qparams_affine / quantize_affine (integer zero-point domain)
** except that TorchAO computes in the weight's dtype (bf16 min/max,
** scale and w * (1 / s) rounded to bf16 for a bf16 model), uses that
** dtype's epsilon, and derives zp from the unrounded scale; petrel keeps
** float32 until the scale is stored, and divides.  Measured with TorchAO
** 0.18 (tools/fixtures/make_quant_fixtures.py --torchao): f32 asymmetric
** identical; f32 symmetric 0-5 codes of 2048 differ (its w * (1 / s) on a
** tie); bf16 and f16 weights differ in a third of the int8 codes, 1 % of
** the int4 ones and in most bf16 scales.
*/
#ifndef PETREL_CORE_QUANT_H
#define PETREL_CORE_QUANT_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "petrel.h"
#include "quant_fmt.h"

#ifdef __CUDACC__
#define PT_QFN static inline __host__ __device__
#else
#define PT_QFN static inline
#endif

/* Symmetric integer formats (zp = 0, no zeros tensor). */
PT_QFN bool pt_qsym(pt_qfmt f) { return f != PT_QFMT_NVFP4 && !pt_qfmt_asym(f); }

/* ---- rounding ------------------------------------------------------------ */

/* x >= 0 (finite) rounded to nearest even in a binary format with `mbits`
 * stored mantissa bits whose smallest normal exponent is `emin` (values
 * below 2^emin are subnormal: a fixed quantum 2^(emin - mbits)).  No
 * overflow handling.  Every step is exact but the rint. */
PT_QFN float pt_qround_format(float x, int mbits, int emin) {
    if (x == 0.0f) return 0.0f;
    int e;
    frexpf(x, &e); /* x in [2^(e-1), 2^e) */
    int qe = (e - 1 < emin ? emin : e - 1) - mbits;
    return ldexpf(rintf(ldexpf(x, -qe)), qe);
}

/* A positive scale rounded to the scale dtype (f32, bf16 or f16), as f32. */
PT_QFN float pt_qround_scale(float s, petrel_dtype dt) {
    if (dt == PETREL_DTYPE_BF16) return pt_qround_format(s, 7, -126);
    if (dt == PETREL_DTYPE_F16) return s >= 65520.0f ? INFINITY : pt_qround_format(s, 10, -14);
    return s;
}

/* Store a scale already rounded to dt (so the conversion is exact). */
PT_QFN void pt_qstore_scale(void *dst, int64_t i, float s, petrel_dtype dt) {
    union {
        float f;
        uint32_t u;
    } v = {s};
    if (dt == PETREL_DTYPE_F32) {
        ((float *)dst)[i] = s;
    } else if (dt == PETREL_DTYPE_BF16) {
        ((uint16_t *)dst)[i] = (uint16_t)(v.u >> 16);
    } else { /* f16: rebuild the bits of an exact f16 value */
        uint32_t sign = (v.u >> 16) & 0x8000u, h;
        float a = fabsf(s);
        if (a >= 65536.0f) h = 0x7c00u; /* inf */
        else if (a < 6.103515625e-05f) h = (uint32_t)(a * 16777216.0f); /* subnormal: a / 2^-24 */
        else h = ((((v.u >> 23) & 0xffu) - 112u) << 10) | ((v.u >> 13) & 0x3ffu);
        ((uint16_t *)dst)[i] = (uint16_t)(sign | h);
    }
}

/* ---- integer formats ------------------------------------------------------- */

/* Scale (already rounded to dt) and zero point of one group of n values. */
PT_QFN float pt_qparams(const float *w, int n, pt_qfmt f, petrel_dtype dt, int *zp) {
    float lo = 0.0f, hi = 0.0f;
    for (int i = 0; i < n; i++) {
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
    }
    int qmin = pt_qfmt_qmin(f), qmax = pt_qfmt_qmax(f);
    if (pt_qsym(f)) {
        float a = -lo > hi ? -lo : hi;
        float s = a / ((float)(qmax - qmin) / 2.0f);
        *zp = 0;
        return pt_qround_scale(s > FLT_EPSILON ? s : FLT_EPSILON, dt);
    }
    float s = (hi - lo) / (float)(qmax - qmin);
    float sr = pt_qround_scale(s > FLT_EPSILON ? s : FLT_EPSILON, dt);
    float z = (float)qmin - rintf(lo / sr);
    *zp = (int)(z < (float)qmin ? (float)qmin : z > (float)qmax ? (float)qmax : z);
    return sr;
}

/* The integer q in [qmin, qmax] that stands for w. */
PT_QFN int pt_qcode(float w, float sr, int zp, pt_qfmt f) {
    float q = rintf(w / sr) + (float)zp;
    float qmin = (float)pt_qfmt_qmin(f), qmax = (float)pt_qfmt_qmax(f);
    return (int)(q < qmin ? qmin : q > qmax ? qmax : q);
}

/* ---- nvfp4 ----------------------------------------------------------------- */

/* FP8 E4M3 (fn: no infinities, max 448) bits of x >= 0, nearest even,
 * saturating at 448. */
PT_QFN uint8_t pt_e4m3_bits(float x) {
    float r = x >= 448.0f ? 448.0f : pt_qround_format(x, 3, -6);
    if (r >= 448.0f) return 0x7e;
    if (r < 0.015625f) return (uint8_t)(r * 512.0f); /* subnormal: r / 2^-9 */
    int e;
    float m = frexpf(r, &e); /* r = m * 2^e, m in [0.5, 1) */
    return (uint8_t)(((e - 1 + 7) << 3) | ((int)(m * 16.0f) - 8));
}

/* E2M1 code (bit 3 sign, then 0, 0.5, 1, 1.5, 2, 3, 4, 6) nearest to y,
 * ties to the even code, saturating at 6; the sign is y's.  The count of
 * midpoints below |y| (strictly where the upper code is odd), branch free:
 * random weights would mispredict a chain of ifs. */
PT_QFN uint8_t pt_e2m1_code(float y) {
    float a = fabsf(y);
    int m = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f);
    return (uint8_t)((signbit(y) ? 8 : 0) | m);
}

/* The per-tensor scale t from amax(|W|). */
PT_QFN float pt_nvfp4_tensor_scale(float amax) {
    float t = amax / (6.0f * 448.0f);
    return t > 0.0f ? t : 1.0f;
}

/* ---- one row --------------------------------------------------------------- */

/* Pack n stored codes (each < 2^bits) into a row's bytes from element 0
 * (n a multiple of 8 / bits). */
PT_QFN void pt_qpack(uint8_t *dst, const uint8_t *u, int n, int bits) {
    int per = 8 / bits;
    for (int b = 0; b < n / per; b++) {
        unsigned v = 0;
        for (int i = 0; i < per; i++) v |= (unsigned)u[b * per + i] << (i * bits);
        dst[b] = (uint8_t)v;
    }
}

/* Quantize one row of K float32 values (K a multiple of G, G <= 128; G =
 * 16 for nvfp4): packed codes into `codes` (K * bits / 8 bytes), K / G
 * scales (dtype dt; E4M3 bits for nvfp4) at index `si` onward of `scales`,
 * zero points (asymmetric formats) into zeros[0 .. K/G).  t is the nvfp4
 * tensor scale (ignored otherwise).  False when a value is not finite
 * (nothing meaningful is written then). */
PT_QFN bool pt_quant_row(pt_qfmt f, int G, petrel_dtype dt, const float *w, int64_t K, float t,
                         uint8_t *codes, void *scales, int64_t si, int8_t *zeros) {
    int bits = pt_qfmt_bits(f), qmin = pt_qfmt_qmin(f);
    uint8_t u[128];
    for (int64_t g0 = 0; g0 < K; g0 += G) {
        const float *x = w + g0;
        float amax = 0.0f;
        bool finite = true;
        for (int i = 0; i < G; i++) {
            float a = fabsf(x[i]);
            finite &= a <= FLT_MAX;
            amax = a > amax ? a : amax;
        }
        if (!finite) return false;
        if (f == PT_QFMT_NVFP4) {
            uint8_t sb = pt_e4m3_bits(amax / 6.0f / t);
            float st = pt_e4m3_to_float(sb) * t;
            ((uint8_t *)scales)[si + g0 / G] = sb;
            for (int i = 0; i < G; i++) u[i] = sb ? pt_e2m1_code(x[i] / st) : 0;
        } else {
            int zp;
            float sr = pt_qparams(x, G, f, dt, &zp);
            pt_qstore_scale(scales, si + g0 / G, sr, dt);
            if (zeros) zeros[g0 / G] = (int8_t)zp;
            for (int i = 0; i < G; i++) u[i] = (uint8_t)(pt_qcode(x[i], sr, zp, f) - qmin);
        }
        pt_qpack(codes + g0 * bits / 8, u, G, bits);
    }
    return true;
}

#endif /* PETREL_CORE_QUANT_H */
