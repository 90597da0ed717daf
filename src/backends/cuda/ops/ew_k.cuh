/*
** ew_k.cuh -- device side of the elementwise iterator (ew_k.h), included by
** the elementwise kernel files (binary_k.cu, unary_k.cu, where_k.cu,
** copy_k.cu, create_k.cu): element loads and stores with torch's
** conversions, offsets from a linear index, and the two launch shapes every
** family uses:
**
**  - ew_launch: a grid-stride loop over the iterator calling a "body"
**    functor per element; 32-bit index math when the iterator allows it.
**    Any dtypes, strides and scalars.
**  - ew_try_vec: dense, 16-byte aligned f32/f16/bf16 tensors move as 16-byte
**    vectors (8 halves per load), computed in float; the decode fast path.
**
** Conversions match the CPU reference (core/dtype.c): values travel as
** float (f32/f16/bf16 compute), double (f64) or int64 (integers, bool);
** float -> int truncates, with NaN and out-of-range values giving INT64_MIN
** before narrowing, as on the host; anything -> bool is != 0; f16/bf16 are
** rounded to nearest even, once.
*/
#ifndef PETREL_CUDA_EW_K_CUH
#define PETREL_CUDA_EW_K_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include <type_traits>

#include <petrel.h>

#include "dense_k.cuh"
#include "ew_k.h"

/* Element code is __host__ too, so it can be checked against the CPU
 * reference on a machine without a GPU. */
#define PCU_HD __host__ __device__ __forceinline__
/* "#pragma unroll" in device code only: the host pass of __host__
 * __device__ functions would warn about an unknown pragma. */
#ifdef __CUDA_ARCH__
#define EW_UNROLL _Pragma("unroll")
#else
#define EW_UNROLL
#endif

/* ---- conversions ---------------------------------------------------------- */

/* Float -> int64 as the CPU does it: truncation, INT64_MIN when undefined. */
PCU_HD int64_t ew_f2i(double d) {
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)d;
}

/* A source value s as compute type CT.  Integers reach float through
 * double, as the host's (float)(double)v does. */
template <class CT, class S> PCU_HD CT ew_cvt(S s) {
    if constexpr (std::is_same<CT, int64_t>::value) {
        if constexpr (std::is_floating_point<S>::value) return ew_f2i((double)s);
        else return (int64_t)s;
    } else if constexpr (std::is_integral<S>::value) {
        return (CT)(double)s;
    } else {
        return (CT)s;
    }
}

/* Element i of a tensor of dtype dt, as CT. */
template <class CT> PCU_HD CT ew_ld(const void *p, int dt, int64_t i) {
    switch (dt) {
    case PETREL_DTYPE_F32: return ew_cvt<CT>(((const float *)p)[i]);
    case PETREL_DTYPE_F16: return ew_cvt<CT>(__half2float(((const __half *)p)[i]));
    case PETREL_DTYPE_BF16: return ew_cvt<CT>(__bfloat162float(((const __nv_bfloat16 *)p)[i]));
    case PETREL_DTYPE_F64: return ew_cvt<CT>(((const double *)p)[i]);
    case PETREL_DTYPE_I64: return ew_cvt<CT>(((const int64_t *)p)[i]);
    case PETREL_DTYPE_I32: return ew_cvt<CT>((int64_t)((const int32_t *)p)[i]);
    case PETREL_DTYPE_I16: return ew_cvt<CT>((int64_t)((const int16_t *)p)[i]);
    case PETREL_DTYPE_I8: return ew_cvt<CT>((int64_t)((const int8_t *)p)[i]);
    case PETREL_DTYPE_U8: return ew_cvt<CT>((int64_t)((const uint8_t *)p)[i]);
    default: return ew_cvt<CT>((int64_t)(((const uint8_t *)p)[i] != 0)); /* bool */
    }
}

/* Store v (a CT) as element i of a tensor of dtype dt. */
template <class CT> PCU_HD void ew_st(void *p, int dt, int64_t i, CT v) {
    switch (dt) {
    case PETREL_DTYPE_F32: ((float *)p)[i] = ew_cvt<float>(v); return;
    case PETREL_DTYPE_F16: ((__half *)p)[i] = __float2half_rn(ew_cvt<float>(v)); return;
    case PETREL_DTYPE_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(ew_cvt<float>(v)); return;
    case PETREL_DTYPE_F64: ((double *)p)[i] = ew_cvt<double>(v); return;
    case PETREL_DTYPE_BOOL: ((uint8_t *)p)[i] = v != 0; return;
    default: break;
    }
    int64_t w = ew_cvt<int64_t>(v); /* narrowing wraps, like the host's C casts */
    switch (dt) {
    case PETREL_DTYPE_I64: ((int64_t *)p)[i] = w; return;
    case PETREL_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)w; return;
    case PETREL_DTYPE_I16: ((int16_t *)p)[i] = (int16_t)w; return;
    case PETREL_DTYPE_I8: ((int8_t *)p)[i] = (int8_t)w; return;
    default: ((uint8_t *)p)[i] = (uint8_t)w; return; /* u8 */
    }
}

/* Round a float value to the precision of dtype rnd (identity for f64 and
 * non-float dtypes): torch casts operands to their common dtype first. */
template <class CT> PCU_HD CT ew_round(CT v, int rnd) {
    if constexpr (std::is_same<CT, int64_t>::value) {
        return v;
    } else {
        switch (rnd) {
        case PETREL_DTYPE_F32: return (CT)(float)v;
        case PETREL_DTYPE_F16: return (CT)__half2float(__float2half_rn((float)v));
        case PETREL_DTYPE_BF16: return (CT)__bfloat162float(__float2bfloat16_rn((float)v));
        default: return v;
        }
    }
}

/* Input a at element offset off, as CT (scalars come by value). */
template <class CT> PCU_HD CT ew_get(const pcu_ew_arg &a, int64_t off) {
    if (!a.data) {
        if constexpr (std::is_same<CT, int64_t>::value) return a.i;
        else return (CT)a.f;
    }
    return ew_ld<CT>(a.data, a.dtype, off);
}

/* Truthiness of input a at off (a condition or mask of any dtype). */
PCU_HD bool ew_truth(const pcu_ew_arg &a, int64_t off) {
    if (!a.data) return a.f != 0;
    switch (a.dtype) {
    case PETREL_DTYPE_BOOL:
    case PETREL_DTYPE_U8:
    case PETREL_DTYPE_I8: return ((const uint8_t *)a.data)[off] != 0;
    default: return ew_ld<double>(a.data, a.dtype, off) != 0;
    }
}

/* ---- math in float or double -------------------------------------------- */

/* ewm_<fn>(x): the float function for float, the double one for double, so
 * a templated op computes in its compute type (precise CUDA math, no
 * fast-math intrinsics). */
#define EW_MATH1(name)                                                                             \
    PCU_HD float ewm_##name(float x) { return name##f(x); }                                        \
    PCU_HD double ewm_##name(double x) { return name(x); }
#define EW_MATH2(name)                                                                             \
    PCU_HD float ewm_##name(float x, float y) { return name##f(x, y); }                            \
    PCU_HD double ewm_##name(double x, double y) { return name(x, y); }
EW_MATH1(fabs) EW_MATH1(exp) EW_MATH1(expm1) EW_MATH1(log) EW_MATH1(log2) EW_MATH1(log10)
EW_MATH1(log1p) EW_MATH1(sqrt) EW_MATH1(sin) EW_MATH1(cos) EW_MATH1(tan) EW_MATH1(asin)
EW_MATH1(acos) EW_MATH1(atan) EW_MATH1(sinh) EW_MATH1(cosh) EW_MATH1(tanh) EW_MATH1(asinh)
EW_MATH1(acosh) EW_MATH1(atanh) EW_MATH1(erf) EW_MATH1(floor) EW_MATH1(ceil) EW_MATH1(rint)
EW_MATH1(trunc)
EW_MATH2(pow) EW_MATH2(atan2) EW_MATH2(fmod) EW_MATH2(copysign) EW_MATH2(fmin) EW_MATH2(fmax)
#undef EW_MATH1
#undef EW_MATH2

/* ---- offsets ---------------------------------------------------------------- */

template <int NIN, class IT> struct ew_offs {
    IT in[NIN];
    IT out;
};

/* Offsets (elements) of linear index i in the first NIN inputs and the
 * output.  Loops are unrolled with constant indices so the iterator stays
 * in parameter space instead of being copied to local memory. */
template <int NIN, class IT> PCU_HD ew_offs<NIN, IT> ew_offsets(const pcu_ew &it, IT i) {
    ew_offs<NIN, IT> o = {};
    EW_UNROLL
    for (int d = 0; d < PCU_EW_RANK; d++) {
        if (d >= it.rank) break;
        IT r = i; /* the outermost dim takes what is left */
        if (d + 1 < it.rank) {
            IT s = (IT)it.shape[d];
            IT q = i / s;
            r = i - q * s;
            i = q;
        }
        EW_UNROLL
        for (int k = 0; k < NIN; k++) o.in[k] += r * (IT)it.in[k].stride[d];
        o.out += r * (IT)it.out_stride[d];
    }
    return o;
}

/* ---- launches ------------------------------------------------------------- */

#define EW_THREADS 256
#define EW_MAX_BLOCKS 8192 /* grid-stride beyond: ~60 blocks per SM on an H100 */

static inline unsigned ew_blocks(int64_t work) {
    int64_t b = (work + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(b < 1 ? 1 : b > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : b);
}

/* Every elementwise kernel is launched early (dn_launch_pdl): it waits for
 * the kernel before, then lets the one after it launch at once, so a chain
 * of small kernels (a decode step's positions and masks) overlaps their
 * launches. */
template <class IT, class B> __global__ void __launch_bounds__(EW_THREADS) ew_run(pcu_ew it, B body) {
    dn_pdl_wait();
    dn_pdl_release();
    const IT n = (IT)it.numel;
    const IT step = (IT)gridDim.x * (IT)blockDim.x;
    for (IT i = (IT)blockIdx.x * (IT)blockDim.x + (IT)threadIdx.x; i < n; i += step) body(it, i);
}

/* Run body(it, i) for every element i of the iterator. */
template <class B> static cudaError_t ew_launch(const pcu_ew *it, const B &body, cudaStream_t s) {
    if (it->numel <= 0) return cudaSuccess;
    if (it->idx32) return dn_launch_pdl(ew_run<uint32_t, B>, dim3(ew_blocks(it->numel)), dim3(EW_THREADS), 0, s, *it, body);
    return dn_launch_pdl(ew_run<int64_t, B>, dim3(ew_blocks(it->numel)), dim3(EW_THREADS), 0, s, *it, body);
}

/* ---- dense float vectors -------------------------------------------------- */

template <class T> PCU_HD float ew_tof(T x) {
    if constexpr (std::is_same<T, __half>::value) return __half2float(x);
    else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __bfloat162float(x);
    else return x;
}

template <class T> PCU_HD T ew_fromf(float x) {
    if constexpr (std::is_same<T, __half>::value) return __float2half_rn(x);
    else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __float2bfloat16_rn(x);
    else return x;
}

template <class T> constexpr int ew_dtype_of() {
    return std::is_same<T, __half>::value ? PETREL_DTYPE_F16
           : std::is_same<T, __nv_bfloat16>::value ? PETREL_DTYPE_BF16 : PETREL_DTYPE_F32;
}

template <class T, int V> struct alignas(16) ew_pack {
    T v[V];
};

/* f applied to NIN float operands. */
template <int NIN, class F> PCU_HD float ew_apply(const F &f, const float *x) {
    if constexpr (NIN == 1) return f(x[0]);
    else return f(x[0], x[1]);
}

/* Dense elementwise y = f(x...) with TI inputs (or float scalars) and a TO
 * output: V elements per step, V chosen so the narrower type moves 16 bytes
 * per load; the tail (numel % V) goes element by element. */
template <class TI, class TO, int NIN, class F>
__global__ void __launch_bounds__(EW_THREADS) ew_vec(pcu_ew it, F f) {
    dn_pdl_wait(); /* launched early: see ew_run */
    dn_pdl_release();
    constexpr int V = 16 / (sizeof(TI) < sizeof(TO) ? sizeof(TI) : sizeof(TO));
    typedef ew_pack<TI, V> in_pack;
    typedef ew_pack<TO, V> out_pack;
    const int64_t n = it.numel, nv = n / V;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    const int64_t t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const TI *x[NIN];
    float sc[NIN];
    EW_UNROLL
    for (int k = 0; k < NIN; k++) {
        x[k] = (const TI *)it.in[k].data;
        sc[k] = (float)it.in[k].f;
    }
    TO *y = (TO *)it.out;
    for (int64_t v = t0; v < nv; v += step) {
        in_pack a[NIN];
        EW_UNROLL
        for (int k = 0; k < NIN; k++)
            if (x[k]) a[k] = ((const in_pack *)x[k])[v];
        out_pack r;
        EW_UNROLL
        for (int j = 0; j < V; j++) {
            float xs[NIN];
            EW_UNROLL
            for (int k = 0; k < NIN; k++) xs[k] = x[k] ? ew_tof(a[k].v[j]) : sc[k];
            r.v[j] = ew_fromf<TO>(ew_apply<NIN>(f, xs));
        }
        ((out_pack *)y)[v] = r;
    }
    for (int64_t i = nv * V + t0; i < n; i += step) {
        float xs[NIN];
        EW_UNROLL
        for (int k = 0; k < NIN; k++) xs[k] = x[k] ? ew_tof(x[k][i]) : sc[k];
        y[i] = ew_fromf<TO>(ew_apply<NIN>(f, xs));
    }
}

static inline bool ew_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* True when the iterator is dense with a TO output and TI (or scalar)
 * inputs, all 16-byte aligned. */
template <class TI, class TO, int NIN> static bool ew_vec_fits(const pcu_ew *it) {
    if (!it->dense || it->nin != NIN || it->out_dtype != ew_dtype_of<TO>() || !ew_aligned16(it->out))
        return false;
    for (int k = 0; k < NIN; k++) {
        const pcu_ew_arg *a = &it->in[k];
        if (a->data && (a->dtype != ew_dtype_of<TI>() || !ew_aligned16(a->data))) return false;
    }
    return true;
}

template <class TI, class TO, int NIN, class F>
static cudaError_t ew_vec_launch(const pcu_ew *it, const F &f, cudaStream_t s) {
    constexpr int V = 16 / (sizeof(TI) < sizeof(TO) ? sizeof(TI) : sizeof(TO));
    return dn_launch_pdl(ew_vec<TI, TO, NIN, F>, dim3(ew_blocks(it->numel / V + V)), dim3(EW_THREADS), 0, s, *it, f);
}

/* Launch the vector path when every tensor is one dense float dtype (the
 * output's); false leaves it to the caller's general path. */
template <int NIN, class F> static bool ew_try_vec(const pcu_ew *it, const F &f, cudaStream_t s,
                                                   cudaError_t *err) {
    if (it->numel <= 0) return false;
    if (ew_vec_fits<float, float, NIN>(it)) *err = ew_vec_launch<float, float, NIN>(it, f, s);
    else if (ew_vec_fits<__half, __half, NIN>(it)) *err = ew_vec_launch<__half, __half, NIN>(it, f, s);
    else if (ew_vec_fits<__nv_bfloat16, __nv_bfloat16, NIN>(it))
        *err = ew_vec_launch<__nv_bfloat16, __nv_bfloat16, NIN>(it, f, s);
    else return false;
    return true;
}

#endif /* PETREL_CUDA_EW_K_CUH */
