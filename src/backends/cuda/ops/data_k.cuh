/*
** data_k.cuh -- device helpers shared by the data-movement kernel families
** (shape_k.cu, index_k.cu, reduce_k.cu): element load/store with torch's
** conversions, strided offsets, atomic accumulation and launch sizing.
** Device code only; included by .cu files, never by C.
**
** Conversions are bit-for-bit those of core/dtype.c (the CPU oracle):
** float -> int goes through int64 with NaN and out-of-range values giving
** INT64_MIN, anything -> bool is != 0, double -> half/bfloat16 rounds to
** float first, bfloat16 rounds to nearest even with NaN kept quiet.
*/
#ifndef PETREL_CUDA_DATA_K_CUH
#define PETREL_CUDA_DATA_K_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "../cuda.h"

/* ---- scalar conversions ------------------------------------------------- */

__device__ __forceinline__ float dk_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ __forceinline__ uint16_t dk_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__device__ __forceinline__ float dk_f16_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ uint16_t dk_f32_to_f16(float f) { return __half_as_ushort(__float2half_rn(f)); }

/* double -> int64 like a C cast, defined for NaN and out-of-range values. */
__device__ __forceinline__ int64_t dk_f64_to_i64(double d) {
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)d;
}

__device__ __forceinline__ int dk_size(int dt) {
    switch (dt) {
    case PETREL_DTYPE_F64: case PETREL_DTYPE_I64: return 8;
    case PETREL_DTYPE_F32: case PETREL_DTYPE_I32: return 4;
    case PETREL_DTYPE_F16: case PETREL_DTYPE_BF16: case PETREL_DTYPE_I16: return 2;
    default: return 1;
    }
}

__device__ __forceinline__ bool dk_is_float(int dt) {
    return dt == PETREL_DTYPE_F32 || dt == PETREL_DTYPE_F16 || dt == PETREL_DTYPE_BF16 ||
           dt == PETREL_DTYPE_F64;
}

/* ---- element load / store (p points at the element) --------------------- */

__device__ inline double dk_load_f64(const void *p, int dt) {
    switch (dt) {
    case PETREL_DTYPE_F32: return *(const float *)p;
    case PETREL_DTYPE_F16: return dk_f16_to_f32(*(const uint16_t *)p);
    case PETREL_DTYPE_BF16: return dk_bf16_to_f32(*(const uint16_t *)p);
    case PETREL_DTYPE_F64: return *(const double *)p;
    case PETREL_DTYPE_I64: return (double)*(const int64_t *)p;
    case PETREL_DTYPE_I32: return *(const int32_t *)p;
    case PETREL_DTYPE_I16: return *(const int16_t *)p;
    case PETREL_DTYPE_I8: return *(const int8_t *)p;
    case PETREL_DTYPE_U8: return *(const uint8_t *)p;
    default: return *(const uint8_t *)p ? 1.0 : 0.0; /* bool */
    }
}

__device__ inline int64_t dk_load_i64(const void *p, int dt) {
    switch (dt) {
    case PETREL_DTYPE_I64: return *(const int64_t *)p;
    case PETREL_DTYPE_I32: return *(const int32_t *)p;
    case PETREL_DTYPE_I16: return *(const int16_t *)p;
    case PETREL_DTYPE_I8: return *(const int8_t *)p;
    case PETREL_DTYPE_U8: return *(const uint8_t *)p;
    case PETREL_DTYPE_BOOL: return *(const uint8_t *)p ? 1 : 0;
    default: return dk_f64_to_i64(dk_load_f64(p, dt));
    }
}

/* Stores into a float dtype / an integer or bool dtype only (the two
 * halves of dk_store_*, split so that nothing recurses). */
__device__ __forceinline__ void dk_store_float(void *p, int dt, double v) {
    switch (dt) {
    case PETREL_DTYPE_F32: *(float *)p = (float)v; return;
    case PETREL_DTYPE_F16: *(uint16_t *)p = dk_f32_to_f16((float)v); return;
    case PETREL_DTYPE_BF16: *(uint16_t *)p = dk_f32_to_bf16((float)v); return;
    default: *(double *)p = v; return;
    }
}

__device__ __forceinline__ void dk_store_int(void *p, int dt, int64_t v) {
    switch (dt) {
    case PETREL_DTYPE_I64: *(int64_t *)p = v; return;
    case PETREL_DTYPE_I32: *(int32_t *)p = (int32_t)v; return;
    case PETREL_DTYPE_I16: *(int16_t *)p = (int16_t)v; return;
    case PETREL_DTYPE_I8: *(int8_t *)p = (int8_t)v; return;
    case PETREL_DTYPE_U8: *(uint8_t *)p = (uint8_t)v; return;
    default: *(uint8_t *)p = v != 0; return; /* bool */
    }
}

__device__ inline void dk_store_f64(void *p, int dt, double v) {
    if (dk_is_float(dt)) dk_store_float(p, dt, v);
    else if (dt == PETREL_DTYPE_BOOL) *(uint8_t *)p = v != 0;
    else dk_store_int(p, dt, dk_f64_to_i64(v));
}

__device__ inline void dk_store_i64(void *p, int dt, int64_t v) {
    if (dk_is_float(dt)) dk_store_float(p, dt, (double)v);
    else dk_store_int(p, dt, v);
}

/* Copy one element, converting like torch's copy_ when dtypes differ;
 * same-dtype copies move bytes (exact for every dtype). */
__device__ inline void dk_copy_elem(void *dst, int dd, const void *src, int sd) {
    if (dd == sd) {
        switch (dk_size(dd)) {
        case 8: *(uint64_t *)dst = *(const uint64_t *)src; return;
        case 4: *(uint32_t *)dst = *(const uint32_t *)src; return;
        case 2: *(uint16_t *)dst = *(const uint16_t *)src; return;
        default: *(uint8_t *)dst = *(const uint8_t *)src; return;
        }
    }
    if (dk_is_float(sd)) dk_store_f64(dst, dd, dk_load_f64(src, sd));
    else dk_store_i64(dst, dd, dk_load_i64(src, sd));
}

/* Store a fill value: integral fills exactly, float ones converted. */
__device__ __forceinline__ void dk_store_fill(void *p, int dt, int is_int, int64_t iv, double fv) {
    if (is_int) dk_store_i64(p, dt, iv);
    else dk_store_f64(p, dt, fv);
}

/* ---- addressing --------------------------------------------------------- */

__device__ __forceinline__ char *dk_at(void *base, int dt, int64_t off) {
    return (char *)base + off * dk_size(dt);
}
__device__ __forceinline__ const char *dk_at(const void *base, int dt, int64_t off) {
    return (const char *)base + off * dk_size(dt);
}

/* Element offset of row-major position i of a tensor of (rank, shape) with
 * the given strides. */
__device__ __forceinline__ int64_t dk_offset(int64_t i, int rank, const int64_t *shape,
                                             const int64_t *stride) {
    int64_t off = 0;
    for (int d = rank - 1; d >= 0; d--) {
        int64_t s = shape[d];
        int64_t q = i / s;
        off += (i - q * s) * stride[d];
        i = q;
    }
    return off;
}

/* Row-major coordinates of position i in `shape`. */
__device__ __forceinline__ void dk_unravel(int64_t i, int rank, const int64_t *shape, int64_t *c) {
    for (int d = rank - 1; d >= 0; d--) {
        int64_t q = i / shape[d];
        c[d] = i - q * shape[d];
        i = q;
    }
}

/* An index value wrapped into [0, size), or -1 when out of range.  The
 * CPU backend fails the node there; a device kernel cannot report, so the
 * callers make an out-of-range index read zeros and skip writes. */
__device__ __forceinline__ int64_t dk_wrap(int64_t v, int64_t size) {
    int64_t w = v < 0 ? v + size : v;
    return (w < 0 || w >= size) ? -1 : w;
}

/* ---- atomics ------------------------------------------------------------ */

/* *p += v for a 1- or 2-byte element, through a compare-and-swap on the
 * aligned 32-bit word that holds it (no narrower atomics exist). */
__device__ inline void dk_atomic_add_narrow(void *p, int dt, double fv, int64_t iv) {
    uintptr_t addr = (uintptr_t)p;
    unsigned int *word = (unsigned int *)(addr & ~(uintptr_t)3);
    int size = dk_size(dt);
    unsigned int shift = (unsigned int)(addr & 3) * 8;
    unsigned int mask = (size == 2 ? 0xffffu : 0xffu) << shift;
    unsigned int old = *word, assumed;
    do {
        assumed = old;
        uint32_t cur = (assumed & mask) >> shift, next;
        if (dk_is_float(dt)) {
            uint16_t h = (uint16_t)cur;
            float f = dt == PETREL_DTYPE_F16 ? dk_f16_to_f32(h) : dk_bf16_to_f32(h);
            f = (float)((double)f + fv);
            next = dt == PETREL_DTYPE_F16 ? dk_f32_to_f16(f) : dk_f32_to_bf16(f);
        } else {
            uint8_t tmp[2];
            if (size == 2) *(uint16_t *)tmp = (uint16_t)cur;
            else tmp[0] = (uint8_t)cur;
            dk_store_i64(tmp, dt, (int64_t)((uint64_t)dk_load_i64(tmp, dt) + (uint64_t)iv));
            next = size == 2 ? *(uint16_t *)tmp : tmp[0];
        }
        old = atomicCAS(word, assumed, (assumed & ~mask) | ((next << shift) & mask));
    } while (old != assumed);
}

/* *p += v (fv for float dtypes, iv for integers), atomically.  Integers
 * wrap; bool accumulates as "or", as torch's bool add. */
__device__ inline void dk_atomic_add(void *p, int dt, double fv, int64_t iv) {
    switch (dt) {
    case PETREL_DTYPE_F32: atomicAdd((float *)p, (float)fv); return;
    case PETREL_DTYPE_F64: atomicAdd((double *)p, fv); return;
    case PETREL_DTYPE_I64:
        atomicAdd((unsigned long long *)p, (unsigned long long)iv);
        return;
    case PETREL_DTYPE_I32: atomicAdd((int *)p, (int)(int32_t)iv); return;
    default: dk_atomic_add_narrow(p, dt, fv, iv); return;
    }
}

/* ---- launch sizing ------------------------------------------------------ */

#define DK_THREADS 256

/* Blocks for a grid-stride loop over n items: one item per thread up to
 * 65536 blocks, more per thread beyond. */
static inline unsigned int dk_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > 65536) b = 65536;
    return (unsigned int)(b < 1 ? 1 : b);
}

#endif /* PETREL_CUDA_DATA_K_CUH */
