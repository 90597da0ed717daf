/*
** argmax_k.cu -- argmax over one row of logits on the device, so greedy
** decoding moves 8 bytes to the host instead of the whole row.
**
** Each (value, index) pair becomes one 64-bit key that orders like the
** answer: the value's bits made monotonic in the high word, the index
** complemented in the low word, so the largest key is the largest value
** and, among equal values, the lowest index.  Blocks spread over the row,
** reduce their keys with warp shuffles and fold them into *out with one
** 64-bit atomicMax per warp.  NaN never makes a key; a key of 0 (no
** non-NaN value) reads as -1.  A row of 128k logits takes a few
** microseconds.
*/
#include "argmax_k.h"
#include "dense_k.cuh"

#define ARGMAX_THREADS 256

/* Monotonic image of a float's bits (as unsigned, larger = larger value;
 * -0 and +0 alike, as they compare equal); never 0 for a non-NaN float. */
__device__ __forceinline__ unsigned am_order(float v) {
    unsigned b = v == 0.0f ? 0u : __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

template <typename T>
__global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_kernel(const T *x, int64_t stride, int64_t n, unsigned long long *key) {
    unsigned long long best = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = dn_f32(x[i * stride]);
        if (isnan(v)) continue;
        unsigned long long k = ((unsigned long long)am_order(v) << 32) | (0xffffffffu - (unsigned)i);
        if (k > best) best = k;
    }
    for (int o = 16; o > 0; o >>= 1) {
        unsigned long long other = __shfl_down_sync(0xffffffffu, best, o);
        if (other > best) best = other;
    }
    if ((threadIdx.x & 31) == 0 && best) atomicMax(key, best);
}

/* The index in the key's low word, or -1 for no key. */
__global__ void argmax_finish(const unsigned long long *key, int64_t *out) {
    *out = *key ? (int64_t)(0xffffffffu - (unsigned)(*key & 0xffffffffu)) : -1;
}

extern "C" cudaError_t pcu_argmax_launch(cudaStream_t s, int32_t dtype, const void *x, int64_t stride, int64_t n,
                                         int64_t *out, void *work) {
    if (n < 0 || n > 0xffffffffLL) return cudaErrorInvalidValue;
    unsigned long long *key = (unsigned long long *)work;
    cudaError_t e = cudaMemsetAsync(key, 0, sizeof *key, s);
    if (e != cudaSuccess) return e;
    int64_t blocks = (n + ARGMAX_THREADS * 4 - 1) / (ARGMAX_THREADS * 4);
    unsigned grid = (unsigned)(blocks < 1 ? 1 : blocks > 1024 ? 1024 : blocks);
    switch (dtype) {
    case PETREL_DTYPE_F32: argmax_kernel<float><<<grid, ARGMAX_THREADS, 0, s>>>((const float *)x, stride, n, key); break;
    case PETREL_DTYPE_F16: argmax_kernel<__half><<<grid, ARGMAX_THREADS, 0, s>>>((const __half *)x, stride, n, key); break;
    case PETREL_DTYPE_BF16:
        argmax_kernel<__nv_bfloat16><<<grid, ARGMAX_THREADS, 0, s>>>((const __nv_bfloat16 *)x, stride, n, key);
        break;
    default: return cudaErrorInvalidValue;
    }
    argmax_finish<<<1, 1, 0, s>>>(key, out);
    return cudaGetLastError();
}
