/*
** dense_k.cuh -- device helpers shared by the dense kernel families
** (matmul_k.cu, norm_k.cu, sdpa_k.cu, fused_k.cu): float loads and stores
** of the three float storage types, 16-byte vector loads, a runtime-dtype
** load for operands whose dtype varies (masks, biases, norm parameters),
** and warp / block reductions.  Device code only; included by .cu files.
**
** Everything computes in float ("opmath") and rounds once when storing,
** with round-to-nearest-even as torch does.
*/
#ifndef PETREL_CUDA_DENSE_K_CUH
#define PETREL_CUDA_DENSE_K_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "petrel.h"

/* ---- typed float load / store ------------------------------------------- */

__device__ __forceinline__ float dn_f32(float v) { return v; }
__device__ __forceinline__ float dn_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float dn_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T dn_from(float v);
template <> __device__ __forceinline__ float dn_from<float>(float v) { return v; }
template <> __device__ __forceinline__ __half dn_from<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 dn_from<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

/* v rounded to the precision of T (what a tensor of that dtype would hold). */
template <typename T> __device__ __forceinline__ float dn_round(float v) { return dn_f32(dn_from<T>(v)); }

/* ---- runtime-dtype access (f32 / f16 / bf16 / f64 / bool) ---------------- */

/* Element i of a float or bool tensor as float (bool -> 0 / 1). */
__device__ __forceinline__ float dn_load(const void *p, int dt, int64_t i) {
    switch (dt) {
    case PETREL_DTYPE_F32: return ((const float *)p)[i];
    case PETREL_DTYPE_F16: return __half2float(((const __half *)p)[i]);
    case PETREL_DTYPE_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case PETREL_DTYPE_F64: return (float)((const double *)p)[i];
    default: return ((const uint8_t *)p)[i] ? 1.0f : 0.0f;
    }
}

/* Store v (rounded once) into element i of a float tensor. */
__device__ __forceinline__ void dn_store(void *p, int dt, int64_t i, float v) {
    switch (dt) {
    case PETREL_DTYPE_F32: ((float *)p)[i] = v; break;
    case PETREL_DTYPE_F16: ((__half *)p)[i] = __float2half_rn(v); break;
    case PETREL_DTYPE_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
    default: ((double *)p)[i] = v; break;
    }
}

/* v rounded to the precision of dtype dt (f32 / f64: already exact). */
__device__ __forceinline__ float dn_round_to(float v, int dt) {
    switch (dt) {
    case PETREL_DTYPE_F16: return __half2float(__float2half_rn(v));
    case PETREL_DTYPE_BF16: return __bfloat162float(__float2bfloat16_rn(v));
    default: return v;
    }
}

/* ---- 16-byte vectors ----------------------------------------------------- */

/* Elements of T in one 16-byte vector. */
template <typename T> struct dn_vec { static constexpr int n = 16 / (int)sizeof(T); };

/* Unpack a 16-byte vector of T into floats. */
__device__ __forceinline__ void dn_unpack(const uint4 &u, float *f, float) {
    f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void dn_unpack(const uint4 &u, float *f, __half) {
    const __half2 *h = (const __half2 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __half22float2(h[i]);
        f[2 * i] = t.x, f[2 * i + 1] = t.y;
    }
}
__device__ __forceinline__ void dn_unpack(const uint4 &u, float *f, __nv_bfloat16) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x, f[2 * i + 1] = t.y;
    }
}

/* ---- reductions ------------------------------------------------------------ */

__device__ __forceinline__ float dn_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* max that lets a NaN win (and stick), as the CPU oracle's softmax does */
__device__ __forceinline__ float dn_nanmax(float a, float b) { return (b > a || isnan(b)) ? b : a; }

__device__ __forceinline__ float dn_warp_nanmax(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = dn_nanmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the result.  `red` is 32 floats of shared memory; the call
 * ends with a barrier so `red` can be reused right away. */
__device__ __forceinline__ float dn_block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = dn_warp_sum(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    t = dn_warp_sum(t);
    __syncthreads();
    return t;
}

/* ---- programmatic dependent launch (sm_90) ------------------------------- */

/* A kernel launched with dn_launch_pdl may start while the kernel before
 * it on the stream is still running, which hides the launch gap of the
 * decode step's short kernels.  It must call dn_pdl_wait() before it
 * reads anything that kernel may have written and before its first
 * global write (it may overwrite what that kernel still reads); reading
 * program constants before is fine.  Such reads must be plain loads,
 * never __ldg (ld.global.nc): the compiler may hoist those above the
 * wait, as it assumes their memory does not change while the kernel
 * runs, and they would read the previous kernel's output before it is
 * written.  dn_pdl_release() lets the kernel
 * after it start the same way (that kernel's own wait still orders it
 * after this one's completion).  Both are no-ops without such a launch.
 * Release only after the wait: then every kernel before the one right
 * before a starting kernel has completed, whatever their release points. */
__device__ __forceinline__ void dn_pdl_wait(void) { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void dn_pdl_release(void) { asm volatile("griddepcontrol.launch_dependents;" :::); }

/* Asynchronous 16-byte copies from global into shared memory (sm_80+):
 * dn_cp16 copies, dn_cp16_fill copies n bytes (0 or 16) and zero-fills
 * the rest, dn_cp4 copies 4 bytes (4-byte aligned, through L1);
 * dn_cp_commit closes a group of them, dn_cp_wait<N> waits until at most N
 * groups are in flight. */
__device__ __forceinline__ void dn_cp16(void *dst, const void *src) {
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void dn_cp16_fill(void *dst, const void *src, int n) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"((unsigned)__cvta_generic_to_shared(dst)),
                 "l"(src), "r"(n)
                 : "memory");
}
__device__ __forceinline__ void dn_cp4(void *dst, const void *src) {
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void dn_cp_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void dn_cp_wait(void) {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* Thread block clusters (sm_90): dn_saddr, a shared memory pointer's
 * shared::cta address; dn_mapa, the same address in cluster block `rank`
 * (shared::cluster). */
__device__ __forceinline__ unsigned dn_saddr(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ unsigned dn_mapa(unsigned addr, unsigned rank) {
    unsigned r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(addr), "r"(rank));
    return r;
}

template <typename... P, typename... A>
static cudaError_t dn_launch_pdl(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A... args) {
    cudaLaunchAttribute at;
    at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = &at;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, k, args...);
}

/* ---- step timeline (a build with -DPCU_STEP_TRACE only) ------------------ */

/* Each block of an instrumented kernel leaves one record: its launch
 * (%gridid: the graph's kernel node, the same at every replay), and the
 * global timer (ns) of its thread 0 at its start (t[0]), after its
 * dependent-launch wait (t[1]), at its end (t[2]) and at up to three
 * points of the kernel's own (t[3..5], ST_MARK; 0 = not passed), with
 * kind << 24 | smid << 16 | block.  The buffer is per translation unit;
 * PCU_ST_EXPORT(name) defines `int name(void *out, int max)`, which copies
 * the records out (at most max), clears them and returns their count (or
 * -1).  Read by tests/gpu/step_timeline.c. */
#ifdef PCU_STEP_TRACE
#define PCU_ST_MAX (1 << 19)
typedef struct pcu_st_rec {
    unsigned long long grid, t[6];
    unsigned info, pad;
} pcu_st_rec;
static __device__ pcu_st_rec pcu_st_buf[PCU_ST_MAX];
static __device__ unsigned pcu_st_count;
__device__ __forceinline__ unsigned long long pcu_st_now(void) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ void pcu_st_put(unsigned kind, unsigned long long *t) {
    __syncthreads();
    if (threadIdx.x != 0) return;
    unsigned long long g;
    unsigned sm;
    t[2] = pcu_st_now();
    asm volatile("mov.u64 %0, %%gridid;" : "=l"(g));
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    unsigned i = atomicAdd(&pcu_st_count, 1u);
    if (i < PCU_ST_MAX) {
        pcu_st_rec r = {g, {t[0], t[1], t[2], t[3], t[4], t[5]},
                        kind << 24 | (sm & 0xffu) << 16 | ((blockIdx.x + blockIdx.y * gridDim.x) & 0xffffu), 0};
        pcu_st_buf[i] = r;
    }
}
#define ST_START() unsigned long long st_t[6] = {pcu_st_now(), 0, 0, 0, 0, 0}
#define ST_WAITED() (st_t[1] = pcu_st_now())
#define ST_MARK(k) (st_t[k] = st_t[k] ? st_t[k] : pcu_st_now()) /* the first pass only */
#define ST_END(kind) pcu_st_put(kind, st_t)
#define PCU_ST_EXPORT(name)                                                                                  \
    extern "C" __attribute__((visibility("default"))) int name(void *out, int max) {                         \
        unsigned n = 0, z = 0;                                                                               \
        if (cudaDeviceSynchronize() != cudaSuccess || cudaMemcpyFromSymbol(&n, pcu_st_count, sizeof n) != cudaSuccess) \
            return -1;                                                                                       \
        if (n > PCU_ST_MAX) n = PCU_ST_MAX;                                                                  \
        if ((int)n > max) n = (unsigned)max;                                                                 \
        if (n && cudaMemcpyFromSymbol(out, pcu_st_buf, n * sizeof(pcu_st_rec)) != cudaSuccess) return -1;    \
        if (cudaMemcpyToSymbol(pcu_st_count, &z, sizeof z) != cudaSuccess) return -1;                        \
        return (int)n;                                                                                       \
    }
#else
#define ST_START() ((void)0)
#define ST_WAITED() ((void)0)
#define ST_MARK(k) ((void)0)
#define ST_END(kind) ((void)0)
#define PCU_ST_EXPORT(name)
#endif

#endif /* PETREL_CUDA_DENSE_K_CUH */
