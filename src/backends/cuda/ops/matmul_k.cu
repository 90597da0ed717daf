/*
** matmul_k.cu -- device kernels of the "matmul" family: the few-row
** matrix-vector product of decode (x @ W^T with 1..8 rows of x), which
** must stream W at close to memory bandwidth, and a scaling helper.
** Larger products go to cuBLAS (matmul.c).
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
#define GEMV_CPT 2 /* chunks per row per thread loaded before use */

template <typename T, int MR, int RB, int CPT>
__global__ void __launch_bounds__(GEMV_MAX_THREADS) gemv_kernel(pcu_gemv g) {
    constexpr int V = dn_vec<T>::n; /* elements per 16-byte chunk */
    const T *w = (const T *)g.w, *x = (const T *)g.x;
    const int64_t nch = g.K / V, n0 = (int64_t)blockIdx.x * RB;
    const int nt = blockDim.x;
    float acc[MR][RB];
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int r = 0; r < RB; r++) acc[m][r] = 0.0f;

    for (int64_t c0 = threadIdx.x; c0 < nch; c0 += (int64_t)nt * CPT) {
        /* all loads of W first: they are what the kernel waits for */
        uint4 wv[RB][CPT];
#pragma unroll
        for (int r = 0; r < RB; r++)
#pragma unroll
            for (int q = 0; q < CPT; q++) {
                int64_t c = c0 + (int64_t)q * nt;
                wv[r][q] = (c < nch && n0 + r < g.N)
                               ? __ldcs((const uint4 *)(w + (n0 + r) * g.K + c * V)) /* read once: don't keep */
                               : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
        for (int q = 0; q < CPT; q++) {
            int64_t c = c0 + (int64_t)q * nt;
            if (c < nch) {
                float wf[RB][V];
#pragma unroll
                for (int r = 0; r < RB; r++) dn_unpack(wv[r][q], wf[r], T());
#pragma unroll
                for (int m = 0; m < MR; m++) {
                    if (m < g.M) {
                        float xf[V];
                        dn_unpack(__ldg((const uint4 *)(x + m * g.ldx + c * V)), xf, T());
#pragma unroll
                        for (int r = 0; r < RB; r++)
#pragma unroll
                            for (int v = 0; v < V; v++) acc[m][r] = fmaf(wf[r][v], xf[v], acc[m][r]);
                    }
                }
            }
        }
    }

    __shared__ float red[GEMV_MAX_THREADS / 32][MR * RB];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = nt >> 5;
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int r = 0; r < RB; r++) {
            float t = dn_warp_sum(acc[m][r]);
            if (lane == 0) red[warp][m * RB + r] = t;
        }
    __syncthreads();
    for (int t = threadIdx.x; t < MR * RB; t += nt) {
        int m = t / RB, r = t % RB;
        int64_t n = n0 + r;
        if (m < g.M && n < g.N) {
            float s = 0.0f;
            for (int k = 0; k < nw; k++) s += red[k][t];
            float v = g.alpha * s;
            if (g.self) v += g.beta * dn_load(g.self, g.self_dtype, m * g.self_sm + n * g.self_sn);
            ((T *)g.out)[m * g.N + n] = dn_from<T>(v);
        }
    }
}

template <typename T, int MR, int RB>
static cudaError_t gemv_go(cudaStream_t s, const pcu_gemv *g, int threads) {
    unsigned blocks = (unsigned)((g->N + RB - 1) / RB);
    gemv_kernel<T, MR, RB, GEMV_CPT><<<blocks, threads, 0, s>>>(*g);
    return cudaGetLastError();
}

/* Rows per block: 4 when that still gives two blocks per multiprocessor,
 * fewer for small N.  Threads: one per 16-byte chunk of a row, at most
 * 256. */
template <typename T, int MR> static cudaError_t gemv_rows(cudaStream_t s, const pcu_gemv *g, int sm_count) {
    int64_t nch = g->K / dn_vec<T>::n;
    int threads = nch >= GEMV_MAX_THREADS ? GEMV_MAX_THREADS : (int)((nch + 31) / 32 * 32);
    if (g->N >= 4LL * 2 * sm_count) return gemv_go<T, MR, 4>(s, g, threads);
    if (g->N >= 2LL * 2 * sm_count) return gemv_go<T, MR, 2>(s, g, threads);
    return gemv_go<T, MR, 1>(s, g, threads);
}

template <typename T> static cudaError_t gemv_dispatch(cudaStream_t s, const pcu_gemv *g, int sm_count) {
    if (g->M <= 1) return gemv_rows<T, 1>(s, g, sm_count);
    if (g->M <= 2) return gemv_rows<T, 2>(s, g, sm_count);
    if (g->M <= 4) return gemv_rows<T, 4>(s, g, sm_count);
    return gemv_rows<T, 8>(s, g, sm_count);
}

extern "C" cudaError_t pcu_gemv_launch(cudaStream_t s, const pcu_gemv *g, int sm_count) {
    if (g->M < 1 || g->M > PCU_GEMV_MAX_M || g->K < 1) return cudaErrorInvalidValue;
    switch (g->dtype) {
    case PETREL_DTYPE_F32: return gemv_dispatch<float>(s, g, sm_count);
    case PETREL_DTYPE_F16: return gemv_dispatch<__half>(s, g, sm_count);
    case PETREL_DTYPE_BF16: return gemv_dispatch<__nv_bfloat16>(s, g, sm_count);
    default: return cudaErrorInvalidValue;
    }
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
