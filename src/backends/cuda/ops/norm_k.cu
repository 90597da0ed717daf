/*
** norm_k.cu -- device kernels of the "norm" family: last-dim layer / RMS
** norm (also petrel.rms_norm) and segment norms (group norm, batch norm).
**
** One block per row (resp. segment).  Statistics take two passes in fp32
** (the mean, then the squared deviations from it, which loses no accuracy
** to cancellation the way E[x^2] - E[x]^2 would).  The row kernel is
** latency-bound in decode (one row of an LLM's hidden size): it loads the
** first NORM_NPT elements per thread of x, the weight and the bias into
** registers in one batch, every load in flight together, so a row with
** D <= threads * NORM_NPT waits for memory once; longer rows re-read the
** rest in each pass.
*/
#include "dense_k.cuh"
#include "norm_k.h"

#define NORM_THREADS 256
#define NORM_NPT 16 /* row elements per thread held in registers */

/* ---- last-dim norms --------------------------------------------------------- */

/* v[k] = p[threadIdx.x + k * nt] as float for k < NORM_NPT, `fill` past D.
 * Unrolled with one element type, so all the loads are issued before the
 * first conversion waits for one. */
template <typename T>
__device__ __forceinline__ void rn_load(const T *p, int64_t D, int nt, float fill, float *v) {
#pragma unroll
    for (int k = 0; k < NORM_NPT; k++) {
        int64_t d = threadIdx.x + (int64_t)k * nt;
        v[k] = d < D ? dn_f32(p[d]) : fill;
    }
}

/* The same for a parameter vector of runtime dtype: one switch around the
 * batch (a switch per element would wait for each load in turn). */
__device__ __forceinline__ void rn_load_param(const void *p, int dt, int64_t D, int nt, float fill, float *v) {
    switch (dt) {
    case PETREL_DTYPE_F32: rn_load((const float *)p, D, nt, fill, v); break;
    case PETREL_DTYPE_F16: rn_load((const __half *)p, D, nt, fill, v); break;
    case PETREL_DTYPE_BF16: rn_load((const __nv_bfloat16 *)p, D, nt, fill, v); break;
    default:
#pragma unroll
        for (int k = 0; k < NORM_NPT; k++) {
            int64_t d = threadIdx.x + (int64_t)k * nt;
            v[k] = d < D ? dn_load(p, dt, d) : fill;
        }
    }
}

/* Normalized value v of element d, then petrel.rms_norm's rounding point,
 * the weight (wv: w[d] already loaded, or 1 + w[d] with add_one) and the
 * bias; stored rounded once. */
__device__ __forceinline__ void rn_store(const pcu_rownorm &a, int64_t at, float v, float wv, float bv) {
    if (a.norm_dtype >= 0) v = dn_round_to(v, a.norm_dtype);
    if (a.w) v *= a.add_one ? 1.0f + wv : wv;
    if (a.b) v += bv;
    dn_store(a.out, a.odt, at, v);
}

template <typename T> __global__ void __launch_bounds__(NORM_THREADS) rownorm_kernel(pcu_rownorm a) {
    __shared__ float red[32];
    const int nt = blockDim.x;
    const int64_t row = blockIdx.x, D = a.D, tail = (int64_t)nt * NORM_NPT;
    const T *x = (const T *)a.x + row * D;
    float xv[NORM_NPT], wv[NORM_NPT], bv[NORM_NPT]; /* element threadIdx.x + k * nt */
    dn_pdl_wait();
    dn_pdl_release();
    rn_load(x, D, nt, 0.0f, xv);
    if (a.w) rn_load_param(a.w, a.wdt, D, nt, 0.0f, wv);
    if (a.b) rn_load_param(a.b, a.bdt, D, nt, 0.0f, bv);
    float mean = 0.0f;
    if (!a.rms) {
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < NORM_NPT; k++) s += xv[k];
        for (int64_t d = tail + threadIdx.x; d < D; d += nt) s += dn_f32(x[d]);
        mean = D > 0 ? dn_block_sum(s, red) / (float)D : 0.0f;
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < NORM_NPT; k++) {
        float v = xv[k] - mean;
        if (threadIdx.x + (int64_t)k * nt < D) ss += v * v;
    }
    for (int64_t d = tail + threadIdx.x; d < D; d += nt) {
        float v = dn_f32(x[d]) - mean;
        ss += v * v;
    }
    float var = D > 0 ? dn_block_sum(ss, red) / (float)D : 0.0f;
    float rstd = 1.0f / sqrtf(var + a.eps);
#pragma unroll
    for (int k = 0; k < NORM_NPT; k++) {
        int64_t d = threadIdx.x + (int64_t)k * nt;
        if (d < D) rn_store(a, row * D + d, (xv[k] - mean) * rstd, a.w ? wv[k] : 1.0f, a.b ? bv[k] : 0.0f);
    }
    for (int64_t d = tail + threadIdx.x; d < D; d += nt) /* long rows: the rest, re-read */
        rn_store(a, row * D + d, (dn_f32(x[d]) - mean) * rstd, a.w ? dn_load(a.w, a.wdt, d) : 1.0f,
                 a.b ? dn_load(a.b, a.bdt, d) : 0.0f);
    if (threadIdx.x == 0) {
        if (a.mean) dn_store(a.mean, a.mean_dt, row, mean);
        if (a.rstd) dn_store(a.rstd, a.rstd_dt, row, rstd);
    }
}

/* Launched with programmatic dependent launch (dense_k.cuh): the decode
 * step's norms start while the kernel before them finishes, and release
 * the GEMV after them at once, so it streams its weights meanwhile. */
template <typename T> static cudaError_t rownorm_go(cudaStream_t s, const pcu_rownorm *a, int threads) {
    cudaError_t e = dn_launch_pdl(rownorm_kernel<T>, dim3((unsigned)a->M), dim3((unsigned)threads), 0, s, *a);
    cudaError_t last = cudaGetLastError(); /* clear it either way */
    return e != cudaSuccess ? e : last;
}

extern "C" cudaError_t pcu_rownorm_launch(cudaStream_t s, const pcu_rownorm *a) {
    if (a->M == 0) return cudaSuccess;
    int threads = a->D >= 2048 ? NORM_THREADS : a->D >= 512 ? 128 : a->D >= 128 ? 64 : 32;
    switch (a->xdt) {
    case PETREL_DTYPE_F32: return rownorm_go<float>(s, a, threads);
    case PETREL_DTYPE_F16: return rownorm_go<__half>(s, a, threads);
    case PETREL_DTYPE_BF16: return rownorm_go<__nv_bfloat16>(s, a, threads);
    default: return cudaErrorInvalidValue;
    }
}

/* ---- segment norms ------------------------------------------------------------ */

template <typename T> __global__ void __launch_bounds__(NORM_THREADS) segnorm_kernel(pcu_segnorm a) {
    __shared__ float red[32];
    const int64_t seg = blockIdx.x, n = a.pieces * a.inner;
    const T *x = (const T *)a.x + seg * a.seg_stride;
    const int64_t chan0 = (seg % a.chan_mod) * a.chan_mul;
    /* element i of the segment: run i / inner, position i % inner */
#define SEG_AT(i) (((i) / a.inner) * a.piece_stride + (i) % a.inner)
    float mean = 0.0f, rstd;
    if (!a.run_mean) {
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += dn_f32(x[SEG_AT(i)]);
        mean = n > 0 ? dn_block_sum(s, red) / (float)n : 0.0f;
        float ss = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            float v = dn_f32(x[SEG_AT(i)]) - mean;
            ss += v * v;
        }
        float var = n > 0 ? dn_block_sum(ss, red) / (float)n : 0.0f;
        rstd = 1.0f / sqrtf(var + a.eps);
    } else { /* inference batch norm: one channel per segment */
        mean = dn_load(a.run_mean, a.rmdt, chan0);
        rstd = 1.0f / sqrtf(dn_load(a.run_var, a.rvdt, chan0) + a.eps);
    }
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        int64_t at = SEG_AT(i), c = chan0 + (i / a.inner) * a.chan_piece;
        float v = (dn_f32(x[at]) - mean) * rstd;
        if (a.w) v *= dn_load(a.w, a.wdt, c);
        if (a.b) v += dn_load(a.b, a.bdt, c);
        dn_store(a.out, a.odt, seg * a.seg_stride + at, v);
    }
#undef SEG_AT
    if (threadIdx.x == 0) {
        if (a.mean) dn_store(a.mean, a.mean_dt, seg, mean);
        if (a.rstd) dn_store(a.rstd, a.rstd_dt, seg, rstd);
    }
}

extern "C" cudaError_t pcu_segnorm_launch(cudaStream_t s, const pcu_segnorm *a) {
    if (a->nseg == 0) return cudaSuccess;
    int threads = a->pieces * a->inner >= 2048 ? NORM_THREADS : 64;
    switch (a->xdt) {
    case PETREL_DTYPE_F32: segnorm_kernel<float><<<(unsigned)a->nseg, threads, 0, s>>>(*a); break;
    case PETREL_DTYPE_F16: segnorm_kernel<__half><<<(unsigned)a->nseg, threads, 0, s>>>(*a); break;
    case PETREL_DTYPE_BF16: segnorm_kernel<__nv_bfloat16><<<(unsigned)a->nseg, threads, 0, s>>>(*a); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
