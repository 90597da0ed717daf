/*
** quant_fmt.h -- the quantized weight formats of ops.def ("Quantized
** weights": petrel.qlinear, petrel.qembedding) as small inline helpers:
** the format table, bit packing of codes and the E2M1 / E4M3 decoders.
** One definition for everything that reads or writes these bytes: the
** compiler's quantizer, the CPU kernels and the CUDA kernels (under nvcc
** the helpers are __host__ __device__; the name parser is host only).
** Bottom layer: depends on nothing but the C library.
**
** A weight W (N, K) with group size G is stored as codes u8
** (N, K * bits / 8), scales (N, K / G) and, for asymmetric formats, zeros
** i8 (N, K / G).  Element k of a row is in byte k * bits / 8 at bit
** (k * bits) % 8, low bits first; the stored code u stands for q = u + qmin.
**   integer formats: W[n, k] = (q - zp) * s, zp = 0 when symmetric;
**   nvfp4: W[n, k] = e2m1(u) * e4m3(scale byte) * t (t: one f32 per tensor).
*/
#ifndef PETREL_QUANT_FMT_H
#define PETREL_QUANT_FMT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define PT_QHD static __host__ __device__ __forceinline__
#else
#define PT_QHD static inline
#endif

/* The formats, in the order of ops.def's list. */
typedef enum pt_qfmt {
    PT_QFMT_INT8,  /* 8 bits, [-128, 127], asymmetric */
    PT_QFMT_INT8S, /* 8 bits, [-128, 127], symmetric */
    PT_QFMT_INT4,  /* 4 bits, [0, 15], asymmetric */
    PT_QFMT_INT4S, /* 4 bits, [-8, 7], symmetric */
    PT_QFMT_INT2,  /* 2 bits, [0, 3], asymmetric */
    PT_QFMT_INT2S, /* 2 bits, [-2, 1], symmetric */
    PT_QFMT_NVFP4, /* E2M1 codes, E4M3 scale per 16, f32 scale per tensor */
    PT_QFMT_COUNT
} pt_qfmt;

/* Format names as the op's `format` argument spells them (index: pt_qfmt). */
#define PT_QFMT_NAMES "int8", "int8s", "int4", "int4s", "int2", "int2s", "nvfp4"
#define PT_QFMT_LIST "int8, int8s, int4, int4s, int2, int2s or nvfp4" /* for messages */

/* The name of format f, and the format named `s` or -1 (host only). */
static inline const char *pt_qfmt_name(pt_qfmt f) {
    static const char *const names[PT_QFMT_COUNT] = {PT_QFMT_NAMES};
    return (unsigned)f < PT_QFMT_COUNT ? names[f] : "?";
}
static inline int pt_qfmt_parse(const char *s) {
    for (int f = 0; s && f < PT_QFMT_COUNT; f++)
        if (!strcmp(s, pt_qfmt_name((pt_qfmt)f))) return f;
    return -1;
}

/* Bits per code: 8, 4 or 2. */
PT_QHD int pt_qfmt_bits(pt_qfmt f) {
    return f <= PT_QFMT_INT8S ? 8 : (f <= PT_QFMT_INT4S || f == PT_QFMT_NVFP4) ? 4 : 2;
}

/* Integer formats: the smallest and largest q; the stored code is q - qmin. */
PT_QHD int pt_qfmt_qmin(pt_qfmt f) {
    switch (f) {
    case PT_QFMT_INT8:
    case PT_QFMT_INT8S: return -128;
    case PT_QFMT_INT4S: return -8;
    case PT_QFMT_INT2S: return -2;
    default: return 0;
    }
}
PT_QHD int pt_qfmt_qmax(pt_qfmt f) { return pt_qfmt_qmin(f) + (1 << pt_qfmt_bits(f)) - 1; }

/* Does the format carry per-group zero points (zeros i8 (N, K / G))? */
PT_QHD bool pt_qfmt_asym(pt_qfmt f) { return f == PT_QFMT_INT8 || f == PT_QFMT_INT4 || f == PT_QFMT_INT2; }

/* nvfp4's fixed group size. */
#define PT_NVFP4_GROUP 16

/* Code k of a packed row (u, before adding qmin). */
PT_QHD unsigned pt_q_code(const uint8_t *row, int64_t k, int bits) {
    int64_t bit = k * bits;
    return (unsigned)(row[bit >> 3] >> (bit & 7)) & ((1u << bits) - 1u);
}

/* Store code u (< 2^bits) as element k of a packed row; the other codes
 * sharing its byte are kept. */
PT_QHD void pt_q_set_code(uint8_t *row, int64_t k, int bits, unsigned u) {
    int64_t bit = k * bits;
    unsigned mask = ((1u << bits) - 1u) << (bit & 7);
    row[bit >> 3] = (uint8_t)((row[bit >> 3] & ~mask) | ((u << (bit & 7)) & mask));
}

/* E2M1 (FP4): bit 3 sign, bits 2-1 exponent (bias 1), bit 0 mantissa:
 * the magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
PT_QHD float pt_e2m1_to_float(unsigned code) {
    unsigned e = (code >> 1) & 3u, m = code & 1u;
    float mag = e ? (float)(2u + m) * (float)(1u << e) * 0.25f : (float)m * 0.5f;
    return (code & 8u) ? -mag : mag;
}

/* FP8 E4M3 ("fn": no infinities): bit 7 sign, bits 6-3 exponent (bias 7),
 * bits 2-0 mantissa; exponent 0 is subnormal (m * 2^-9); S.1111.111 is
 * NaN; the largest finite value is 448. */
PT_QHD float pt_e4m3_to_float(uint8_t b) {
    unsigned e = (b >> 3) & 15u, m = b & 7u;
    union { uint32_t u; float f; } v;
    if (e == 15 && m == 7) {
        v.u = 0x7fc00000u;
    } else if (e == 0) {
        v.f = (float)m * 0.001953125f; /* 2^-9 */
    } else {
        v.u = ((e + 120u) << 23) | (m << 20);
    }
    if (b & 0x80u) v.u ^= 0x80000000u;
    return v.f;
}

#undef PT_QHD
#endif /* PETREL_QUANT_FMT_H */
