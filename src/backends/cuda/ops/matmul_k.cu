/*
** matmul_k.cu -- device kernels of the "matmul" family: the few-row
** matrix-vector product of decode (x @ W^T with 1..8 rows of x), which
** must stream W at close to memory bandwidth, and a scaling helper.
** Larger products go to cuBLAS (matmul.c).
**
** The fused linears of ops.def use the same kernel: petrel.linear_n as
** one virtual weight made of segments (one launch for q/k/v),
** petrel.gated_linear with the block streaming the same rows of the gate
** and up weights and applying act(g) * u, petrel.linear_add with the
** residual added after the product's rounding.
**
** GEMV layout: a block owns RB consecutive rows of W and all M rows of x.
** Its threads split the reduction dim K into 16-byte chunks (thread t
** takes chunks t, t + threads, ...).  Each thread first issues the loads
** of CPT chunks of all RB rows -- RB * CPT independent 16-byte loads in
** flight, which is what keeps HBM busy -- then multiplies them with the
** matching chunks of x (small and shared by every block, so they come
** from L1/L2), accumulating in fp32.  The block then reduces its M x RB
** partial sums (warp shuffles, then shared memory) and applies alpha, the
** addend and one rounding.  RB grows with N while the grid keeps a few
** blocks per multiprocessor.  Measured on an H200, this plain layout beat
** both a one-wave grid of fatter blocks (more loads per thread, lower
** occupancy) and a persistent grid that prefetches each block's next rows.
*/
#include "dense_k.cuh"
#include "matmul_k.h"

#define GEMV_MAX_THREADS 256
#define GEMV_CPT 2 /* chunks per row per thread loaded before use (rows longer than one round) */

/* Row n of the virtual weight: its segment (0 without segments). */
__device__ __forceinline__ int gemv_seg(const pcu_gemv &g, int64_t n) {
    int s = 0;
    while (s + 1 < g.nseg && n >= g.seg_start[s + 1]) s++;
    return s;
}

/* Programmatic dependent launch (dense_k.cuh): the GEMV is launched while
 * the kernel before it finishes, streams its first weights (when they are
 * program constants), and waits for that kernel's results (x, the addend)
 * only then; everything it writes comes after the wait.  Once its own
 * loads are issued it lets the next kernel start the same way. */

/* A 16-byte chunk of a weight row, read once (don't keep it in cache).
 * CPT = 1 is the one-pass case (the whole row in one round of loads, only
 * for program constants): there the loads also ask L2 for 128 bytes at a
 * time, which measured 16.6 us instead of 17.4 for the gated 2 x 8192 x
 * 2048 bf16 GEMV on an H200 (4.0 TB/s), but slower for the long rows of
 * CPT = 2.  The asm is volatile, so it stays after an earlier wait. */
template <int CPT> __device__ __forceinline__ uint4 gemv_ldw(const void *p) {
    if (CPT != 1) return __ldcs((const uint4 *)p);
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::128B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

/* The norm prologue's weight on a chunk of x, in x's dtype with one
 * rounding: x * w, or x * (1 + w) as fma(x, w, x).  Packed arithmetic:
 * unpacking to float here had cost 17 more registers in the loop. */
template <typename H2> __device__ __forceinline__ uint4 gemv_norm_scale2(uint4 x, uint4 w, bool add_one) {
    H2 *a = (H2 *)&x;
    const H2 *b = (const H2 *)&w;
#pragma unroll
    for (int i = 0; i < 4; i++) a[i] = add_one ? __hfma2(a[i], b[i], a[i]) : __hmul2(a[i], b[i]);
    return x;
}
__device__ __forceinline__ uint4 gemv_norm_scale(uint4 x, uint4 w, bool add_one, __nv_bfloat16) {
    return gemv_norm_scale2<__nv_bfloat162>(x, w, add_one);
}
__device__ __forceinline__ uint4 gemv_norm_scale(uint4 x, uint4 w, bool add_one, __half) {
    return gemv_norm_scale2<__half2>(x, w, add_one);
}
__device__ __forceinline__ uint4 gemv_norm_scale(uint4 x, uint4 w, bool add_one, float) {
    float *a = (float *)&x;
    const float *b = (const float *)&w;
#pragma unroll
    for (int i = 0; i < 4; i++) a[i] = add_one ? fmaf(a[i], b[i], a[i]) : a[i] * b[i];
    return x;
}

/* G = 2: gated, the block also streams the same rows of w2.  NORM: the
 * norm prologue (pcu_gemv.norm); a template argument because its few
 * extra live values, as a runtime branch, raised the registers of every
 * variant (39 -> 58 for 4 rows of one pass) and slowed them all (q/k/v
 * 6.7 -> 22.6 us in isolation on an H200).  x's sum of squares comes
 * from the chunks the product reads, and each storing thread takes 1/rms
 * from the warps' sums itself.  Reading x again after the loop, with a
 * second block barrier for 1/rms, had cost a few us per launch (H200,
 * bench_gemv, Llama-3.2-1B's shapes: gate/up 19.5 -> 17.8 us, q/k/v 5.25
 * -> 4.59, LM head 124.7 -> 117.3; its decode 1,166 -> 1,232 tok/s). */
template <typename T, int MR, int RB, int CPT, int G, bool NORM>
__global__ void __launch_bounds__(GEMV_MAX_THREADS) gemv_kernel(pcu_gemv g) {
    constexpr int V = dn_vec<T>::n; /* elements per 16-byte chunk */
    constexpr int R = RB * G;       /* weight rows per block */
    const T *x = (const T *)g.x;
    const int64_t nch = g.K / V, n0 = (int64_t)blockIdx.x * RB;
    const int nt = blockDim.x;
    const T *wrow[R]; /* row r of the block (gated: then the same rows of w2) */
#pragma unroll
    for (int r = 0; r < RB; r++) {
        int64_t n = n0 + r < g.N ? n0 + r : g.N - 1; /* past the end: a valid row, never stored */
        if (g.nseg) {
            int sg = gemv_seg(g, n);
            wrow[r] = (const T *)g.seg_w[sg] + (n - g.seg_start[sg]) * g.K;
        } else {
            wrow[r] = (const T *)g.w + n * g.K;
        }
        if (G == 2) wrow[RB + r] = (const T *)g.w2 + n * g.K;
    }
    float acc[MR][R], ss[MR]; /* ss: the sums of x^2 of the norm prologue */
#pragma unroll
    for (int m = 0; m < MR; m++) {
        ss[m] = 0.0f;
#pragma unroll
        for (int r = 0; r < R; r++) acc[m][r] = 0.0f;
    }

    bool waited = !g.w_const;
    if (waited) dn_pdl_wait(); /* a computed weight: it may not be written yet */
    for (int64_t c0 = threadIdx.x; c0 < nch; c0 += (int64_t)nt * CPT) {
        /* all loads of W first: they are what the kernel waits for */
        uint4 wv[R][CPT];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int q = 0; q < CPT; q++) {
                int64_t c = c0 + (int64_t)q * nt;
                wv[r][q] = c < nch ? gemv_ldw<CPT>(wrow[r] + c * V) : make_uint4(0, 0, 0, 0);
            }
        if (!waited) { /* the weights are constant: only x comes from the kernel before */
            dn_pdl_wait();
            waited = true;
        }
#pragma unroll
        for (int q = 0; q < CPT; q++) {
            int64_t c = c0 + (int64_t)q * nt;
            if (c < nch) {
                float wf[R][V];
#pragma unroll
                for (int r = 0; r < R; r++) dn_unpack(wv[r][q], wf[r], T());
                uint4 nu; /* NORM: the norm weight's chunk, shared by every row of x */
                if (NORM) nu = *(const uint4 *)((const T *)g.nw + c * V); /* not __ldg: see dn_pdl_wait */
#pragma unroll
                for (int m = 0; m < MR; m++) {
                    if (m < g.M) {
                        float xf[V];
                        uint4 xu = *(const uint4 *)(x + m * g.ldx + c * V); /* not __ldg: see dn_pdl_wait */
                        if (NORM) { /* x's sum of squares from the same chunk, then x * w */
                            float xr[V];
                            dn_unpack(xu, xr, T());
#pragma unroll
                            for (int v = 0; v < V; v++) ss[m] = fmaf(xr[v], xr[v], ss[m]);
                            xu = gemv_norm_scale(xu, nu, g.norm_add_one, T());
                        }
                        dn_unpack(xu, xf, T());
#pragma unroll
                        for (int r = 0; r < R; r++)
#pragma unroll
                            for (int v = 0; v < V; v++) acc[m][r] = fmaf(wf[r][v], xf[v], acc[m][r]);
                    }
                }
            }
        }
    }

    if (!waited) dn_pdl_wait();
    dn_pdl_release(); /* what is left is the reduction and the stores */

    __shared__ float red[GEMV_MAX_THREADS / 32][MR * R + MR]; /* then MR sums of x^2 */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = nt >> 5;
#pragma unroll
    for (int m = 0; m < MR; m++) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            float t = dn_warp_sum(acc[m][r]);
            if (lane == 0) red[warp][m * R + r] = t;
        }
        if (NORM) {
            float t = dn_warp_sum(ss[m]);
            if (lane == 0) red[warp][MR * R + m] = t;
        }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < MR * RB; t += nt) {
        int m = t / RB, r = t % RB;
        int64_t n = n0 + r;
        if (m >= g.M || n >= g.N) continue;
        float s = 0.0f, s2 = 0.0f;
        for (int k = 0; k < nw; k++) {
            s += red[k][m * R + r];
            if (G == 2) s2 += red[k][m * R + RB + r];
        }
        if (NORM) { /* 1 / rms of x's row m, from the warps' sums of squares */
            float sq = 0.0f;
            for (int k = 0; k < nw; k++) sq += red[k][MR * R + m];
            const float rstd = 1.0f / sqrtf(sq / (float)g.K + g.norm_eps);
            s *= rstd, s2 *= rstd;
        }
        float v;
        if (G == 2) {
            v = dn_round<T>(pcu_act(dn_round<T>(s), g.act)) * dn_round<T>(s2);
        } else if (g.mode == PCU_GEMV_RESID) {
            v = dn_round<T>(s) + dn_load(g.self, g.self_dtype, m * g.self_sm + n * g.self_sn);
        } else {
            v = g.alpha * s;
            if (g.self) v += g.beta * dn_load(g.self, g.self_dtype, m * g.self_sm + n * g.self_sn);
        }
        if (g.nseg) {
            int sg = gemv_seg(g, n);
            int64_t w = g.seg_start[sg + 1] - g.seg_start[sg];
            ((T *)g.seg_out[sg])[m * w + n - g.seg_start[sg]] = dn_from<T>(v);
        } else {
            ((T *)g.out)[m * g.N + n] = dn_from<T>(v);
        }
    }
}

template <typename T, int MR, int RB, int CPT, int G, bool NORM>
static cudaError_t gemv_go(cudaStream_t s, const pcu_gemv *g, int threads) {
    return dn_launch_pdl(gemv_kernel<T, MR, RB, CPT, G, NORM>, dim3((unsigned)((g->N + RB - 1) / RB)),
                         dim3((unsigned)threads), 0, s, *g);
}

/* Rows per block: 4 when that still gives a few blocks per multiprocessor,
 * fewer for small N.  Threads: one per 16-byte chunk of a row, at most
 * 256.  Constant weights whose rows fit one round of loads (K <= 2048 in
 * bf16) go one pass (CPT = 1): no registers held for a second round, so
 * more blocks fit on a multiprocessor.  Measured on an H200 in a chain of
 * launches: gated 2 x 8192 x 2048 bf16 20.6 -> 16.6 us, q/k/v 3072 x 2048
 * 4.6 -> 4.1 us, and 2 rows per block for 2048 x 2048 (3.1 us, 4 rows
 * 3.35).  A gated one-pass block takes 2 rows (4 weight rows streamed):
 * bench_gemv, weights past the L2, Llama-3.2-1B's 2 x 8192 x 2048 20.1 ->
 * 19.4 us, Qwen3-1.7B's 2 x 6144 x 2048 16.2 -> 15.6; its decode 1,110 ->
 * 1,133 tok/s (same run; 1 row per block: 1,059).  Measured in the same
 * decode and not kept: q/k/v with 2 rows per block (1,070), 2 rows for
 * the down projection's two-pass rows (1,106 against 1,134), 1 row for
 * the 2048 x 2048 output projection (1,109).  That projection takes 4
 * rows per block (512 blocks, leaving room on the GPU for the next
 * kernel's early blocks): Llama-3.2-1B 1,162.8 / 1,162.1 -> 1,167.3 /
 * 1,166.9 tok/s, same machine (another: 1,157.3 -> 1,159.9).  Not kept,
 * measured beside it: releasing the next kernel as soon as the weight
 * loads are issued (1,154; with 4 rows for o 1,162; with 8 rows for q/k/v
 * and o 1,146), the gated GEMV on 128 threads of 2 chunks (1,143), 8 rows
 * for the LM head (1,148). */
template <typename T, int MR, int G, bool NORM = false>
static cudaError_t gemv_rows(cudaStream_t s, const pcu_gemv *g, int sm_count) {
    int64_t nch = g->K / dn_vec<T>::n;
    int threads = nch >= GEMV_MAX_THREADS ? GEMV_MAX_THREADS : (int)((nch + 31) / 32 * 32);
    if (g->w_const && nch <= threads) {
        if (G == 1 && g->N >= 4LL * sm_count) return gemv_go<T, MR, 4, 1, G, NORM>(s, g, threads);
        if (g->N >= 2LL * 2 * sm_count) return gemv_go<T, MR, 2, 1, G, NORM>(s, g, threads);
        return gemv_go<T, MR, 1, 1, G, NORM>(s, g, threads);
    }
    if (g->N >= 4LL * 2 * sm_count) return gemv_go<T, MR, 4, GEMV_CPT, G, NORM>(s, g, threads);
    if (g->N >= 2LL * 2 * sm_count) return gemv_go<T, MR, 2, GEMV_CPT, G, NORM>(s, g, threads);
    return gemv_go<T, MR, 1, GEMV_CPT, G, NORM>(s, g, threads);
}

template <typename T, int G> static cudaError_t gemv_dispatch(cudaStream_t s, const pcu_gemv *g, int sm_count) {
    if (g->norm) return g->M == 1 ? gemv_rows<T, 1, G, true>(s, g, sm_count) : cudaErrorInvalidValue;
    if (g->M <= 1) return gemv_rows<T, 1, G>(s, g, sm_count);
    if (g->M <= 2) return gemv_rows<T, 2, G>(s, g, sm_count);
    if (g->M <= 4) return gemv_rows<T, 4, G>(s, g, sm_count);
    return gemv_rows<T, 8, G>(s, g, sm_count);
}

template <typename T> static cudaError_t gemv_type(cudaStream_t s, const pcu_gemv *g, int sm_count) {
    return g->mode == PCU_GEMV_GATED ? gemv_dispatch<T, 2>(s, g, sm_count) : gemv_dispatch<T, 1>(s, g, sm_count);
}

extern "C" cudaError_t pcu_gemv_launch(cudaStream_t s, const pcu_gemv *g, int sm_count) {
    if (g->M < 1 || g->M > PCU_GEMV_MAX_M || g->K < 1 || g->nseg < 0 || g->nseg > PCU_GEMV_MAX_SEG ||
        (g->nseg && g->mode != PCU_GEMV_PLAIN) || (g->mode == PCU_GEMV_RESID && !g->self) ||
        (g->mode == PCU_GEMV_GATED && !g->w2))
        return cudaErrorInvalidValue;
    switch (g->dtype) {
    case PETREL_DTYPE_F32: return gemv_type<float>(s, g, sm_count);
    case PETREL_DTYPE_F16: return gemv_type<__half>(s, g, sm_count);
    case PETREL_DTYPE_BF16: return gemv_type<__nv_bfloat16>(s, g, sm_count);
    default: return cudaErrorInvalidValue;
    }
}

/* ---- fused-linear epilogue (prefill) ------------------------------------------ */

template <typename T>
__global__ void linear_epilogue_kernel(int32_t mode, int32_t act, const T *a, const void *b, int32_t b_dtype,
                                       int64_t b_sm, int64_t b_sn, int64_t cols, T *out, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float av = dn_f32(a[i]), v;
        if (mode == PCU_GEMV_GATED) v = dn_round<T>(pcu_act(av, act)) * dn_f32(((const T *)b)[i]);
        else v = av + dn_load(b, b_dtype, (i / cols) * b_sm + (i % cols) * b_sn);
        out[i] = dn_from<T>(v);
    }
}

extern "C" cudaError_t pcu_linear_epilogue_launch(cudaStream_t s, int32_t dtype, int32_t mode, int32_t act,
                                                  const void *a, const void *b, int32_t b_dtype, int64_t b_sm,
                                                  int64_t b_sn, int64_t cols, void *out, int64_t n) {
    if (n <= 0) return cudaSuccess;
    if (cols < 1) return cudaErrorInvalidValue;
    int64_t blocks = (n + 255) / 256;
    unsigned grid = (unsigned)(blocks < 8192 ? blocks : 8192);
#define LE_GO(T)                                                                                                   \
    linear_epilogue_kernel<T><<<grid, 256, 0, s>>>(mode, act, (const T *)a, b, b_dtype, b_sm, b_sn, cols, (T *)out, n)
    switch (dtype) {
    case PETREL_DTYPE_F32: LE_GO(float); break;
    case PETREL_DTYPE_F16: LE_GO(__half); break;
    case PETREL_DTYPE_BF16: LE_GO(__nv_bfloat16); break;
    default: return cudaErrorInvalidValue;
    }
#undef LE_GO
    return cudaGetLastError();
}

/* ---- scale ------------------------------------------------------------------ */

__global__ void scale_kernel(int32_t dtype, void *data, int64_t n, float beta) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dn_store(data, dtype, i, beta * dn_load(data, dtype, i));
}

extern "C" cudaError_t pcu_scale_launch(cudaStream_t s, int32_t dtype, void *data, int64_t n, float beta) {
    int64_t blocks = (n + 255) / 256;
    scale_kernel<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, s>>>(dtype, data, n, beta);
    return cudaGetLastError();
}
