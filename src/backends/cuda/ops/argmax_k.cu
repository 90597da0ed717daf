/*
** argmax_k.cu -- argmax over one row of logits on the device, so greedy
** decoding moves 8 bytes to the host instead of the whole row.  One block:
** each thread scans a strided share (keeping its first maximum), then the
** block reduces (value, index) pairs, preferring the larger value and, on
** equal values, the lower index.  128k bf16 logits take a few
** microseconds.
*/
#include "argmax_k.h"
#include "dense_k.cuh"

#define ARGMAX_THREADS 1024

/* Is (v, i) better than (bv, bi)?  i < 0 means "none". */
__device__ __forceinline__ bool am_better(float v, int64_t i, float bv, int64_t bi) {
    return i >= 0 && (bi < 0 || v > bv || (v == bv && i < bi));
}

template <typename T>
__global__ void __launch_bounds__(ARGMAX_THREADS) argmax_kernel(const T *x, int64_t stride, int64_t n, int64_t *out) {
    float bv = 0.0f;
    int64_t bi = -1;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = dn_f32(x[i * stride]);
        if (!isnan(v) && (bi < 0 || v > bv)) bv = v, bi = i;
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_down_sync(0xffffffffu, bv, o);
        long long oi = __shfl_down_sync(0xffffffffu, (long long)bi, o);
        if (am_better(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int64_t si[ARGMAX_THREADS / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sv[warp] = bv, si[warp] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nw; w++)
            if (am_better(sv[w], si[w], sv[0], si[0])) sv[0] = sv[w], si[0] = si[w];
        *out = si[0];
    }
}

extern "C" cudaError_t pcu_argmax_launch(cudaStream_t s, int32_t dtype, const void *x, int64_t stride, int64_t n,
                                         int64_t *out) {
    switch (dtype) {
    case PETREL_DTYPE_F32: argmax_kernel<float><<<1, ARGMAX_THREADS, 0, s>>>((const float *)x, stride, n, out); break;
    case PETREL_DTYPE_F16: argmax_kernel<__half><<<1, ARGMAX_THREADS, 0, s>>>((const __half *)x, stride, n, out); break;
    case PETREL_DTYPE_BF16:
        argmax_kernel<__nv_bfloat16><<<1, ARGMAX_THREADS, 0, s>>>((const __nv_bfloat16 *)x, stride, n, out);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
