/*
** argmax_k.cu -- argmax and top-k over one row of logits on the device, so
** greedy decoding moves 8 bytes to the host instead of the whole row, and
** top-k sampling moves its candidates only.
**
** Each (value, index) pair becomes one 64-bit key that orders like the
** answer: the value's bits made monotonic in the high word, the index
** complemented in the low word, so the largest key is the largest value
** and, among equal values, the lowest index.  Blocks spread over the row,
** reduce their keys with warp shuffles and fold them into one word with a
** 64-bit atomicMax per warp; the last block to finish (a counter) reads the
** word, writes the index (and, when asked, into an integer input of the
** next run, growing another by one) and clears the word and the counter
** for the next launch, so the argmax is one kernel.  NaN never makes a
** key; a key of 0 (no non-NaN value) reads as -1.  A row of 128k logits
** takes a few microseconds.
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

/* An integer of dtype dt at p (int64 or int32). */
__device__ __forceinline__ int64_t am_load(const void *p, int32_t dt) {
    return dt == PETREL_DTYPE_I32 ? (int64_t) * (const int *)p : *(const long long *)p;
}
__device__ __forceinline__ void am_store(void *p, int32_t dt, int64_t v) {
    if (dt == PETREL_DTYPE_I32) *(int *)p = (int)v;
    else *(long long *)p = v;
}

template <typename T>
__global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_kernel(const T *x, int64_t stride, int64_t n, pcu_argmax_out o) {
    __shared__ bool last;
    unsigned long long *key = (unsigned long long *)o.work;
    unsigned *count = (unsigned *)(key + 1);
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
    /* the last block: every block's maximum is in *key by now */
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(count, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last || threadIdx.x != 0) return;
    __threadfence();
    unsigned long long k = atomicOr(key, 0ull);
    int64_t idx = k ? (int64_t)(0xffffffffu - (unsigned)(k & 0xffffffffu)) : -1;
    if (o.next) am_store(o.next, o.next_dt, idx);
    if (o.step) am_store(o.step, o.step_dt, am_load(o.step, o.step_dt) + 1);
    *key = 0, *count = 0; /* ready for the next launch, which the stream orders after this one */
    *o.out = idx;
    __threadfence_system(); /* out may be mapped host memory */
}

extern "C" cudaError_t pcu_argmax_launch(cudaStream_t s, int32_t dtype, const void *x, int64_t stride, int64_t n,
                                         const pcu_argmax_out *o) {
    if (n < 0 || n > 0xffffffffLL || !o->out || !o->work) return cudaErrorInvalidValue;
    int64_t blocks = (n + ARGMAX_THREADS * 4 - 1) / (ARGMAX_THREADS * 4);
    unsigned grid = (unsigned)(blocks < 1 ? 1 : blocks > 1024 ? 1024 : blocks);
    switch (dtype) {
    case PETREL_DTYPE_F32: argmax_kernel<float><<<grid, ARGMAX_THREADS, 0, s>>>((const float *)x, stride, n, *o); break;
    case PETREL_DTYPE_F16: argmax_kernel<__half><<<grid, ARGMAX_THREADS, 0, s>>>((const __half *)x, stride, n, *o); break;
    case PETREL_DTYPE_BF16:
        argmax_kernel<__nv_bfloat16><<<grid, ARGMAX_THREADS, 0, s>>>((const __nv_bfloat16 *)x, stride, n, *o);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

/* ---- top-k ------------------------------------------------------------------ */
/*
** The same keys (of x / temperature), sorted in two stages: blocks of
** TOPK_THREADS sort slices of TOPK_SLICE keys in shared memory (bitonic)
** and keep their k largest; one block sorts those nblocks * k keys (at
** most TOPK_MERGE) and writes the k largest, largest first.  A row of
** 128k logits is 63 slices.  Keys of 0 (NaN, or past the row) sort last.
*/
#define TOPK_THREADS 1024
#define TOPK_SLICE 2048

/* Sort the n keys at s (n a power of two) largest first. */
__device__ void tk_sort(unsigned long long *s, int n) {
    for (int size = 2; size <= n; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int i = threadIdx.x; i < n / 2; i += blockDim.x) {
                int a = 2 * i - (i & (stride - 1)), b = a + stride; /* pairs stride apart */
                bool desc = (a & size) == 0; /* alternate runs; the last merge (size = n) is descending */
                unsigned long long x = s[a], y = s[b];
                if ((x < y) == desc) s[a] = y, s[b] = x;
            }
        }
    __syncthreads();
}

template <typename T>
__global__ void __launch_bounds__(TOPK_THREADS)
    topk_slices(const T *x, int64_t stride, int64_t n, float temperature, int k, unsigned long long *part) {
    __shared__ unsigned long long s[TOPK_SLICE];
    const int64_t base = (int64_t)blockIdx.x * TOPK_SLICE;
    for (int j = threadIdx.x; j < TOPK_SLICE; j += blockDim.x) {
        int64_t i = base + j;
        unsigned long long key = 0;
        if (i < n) {
            float v = dn_f32(x[i * stride]) / temperature; /* IEEE division, as the host's */
            if (!isnan(v)) key = ((unsigned long long)am_order(v) << 32) | (0xffffffffu - (unsigned)i);
        }
        s[j] = key;
    }
    tk_sort(s, TOPK_SLICE);
    for (int j = threadIdx.x; j < k; j += blockDim.x) part[(int64_t)blockIdx.x * k + j] = s[j];
}

__global__ void __launch_bounds__(TOPK_THREADS)
    topk_merge(const unsigned long long *part, int count, int pow2, int k, unsigned long long *out) {
    extern __shared__ unsigned long long sk[];
    for (int j = threadIdx.x; j < pow2; j += blockDim.x) sk[j] = j < count ? part[j] : 0ull;
    tk_sort(sk, pow2);
    for (int j = threadIdx.x; j < k; j += blockDim.x) out[j] = sk[j];
}

extern "C" bool pcu_topk_fits(int64_t n, int32_t k) {
    return n >= 1 && n <= 0xffffffffLL && k >= 1 && (n + TOPK_SLICE - 1) / TOPK_SLICE * k <= PCU_TOPK_MERGE;
}

extern "C" cudaError_t pcu_topk_launch(cudaStream_t s, int32_t dtype, const void *x, int64_t stride, int64_t n,
                                       int32_t k, float temperature, void *work, void *out) {
    if (!pcu_topk_fits(n, k)) return cudaErrorInvalidValue;
    unsigned long long *part = (unsigned long long *)work;
    unsigned blocks = (unsigned)((n + TOPK_SLICE - 1) / TOPK_SLICE);
    switch (dtype) {
    case PETREL_DTYPE_F32:
        topk_slices<float><<<blocks, TOPK_THREADS, 0, s>>>((const float *)x, stride, n, temperature, k, part);
        break;
    case PETREL_DTYPE_F16:
        topk_slices<__half><<<blocks, TOPK_THREADS, 0, s>>>((const __half *)x, stride, n, temperature, k, part);
        break;
    case PETREL_DTYPE_BF16:
        topk_slices<__nv_bfloat16>
            <<<blocks, TOPK_THREADS, 0, s>>>((const __nv_bfloat16 *)x, stride, n, temperature, k, part);
        break;
    default: return cudaErrorInvalidValue;
    }
    int count = (int)blocks * k, pow2 = 2;
    while (pow2 < count) pow2 <<= 1;
    size_t smem = (size_t)pow2 * sizeof(unsigned long long);
    cudaError_t e = cudaFuncSetAttribute(topk_merge, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    topk_merge<<<1, TOPK_THREADS, smem, s>>>(part, count, pow2, k, (unsigned long long *)out);
    return cudaGetLastError();
}
