/*
** expert_k.cu -- device kernel of the MoE experts' products behind
** expert_k.h, in two forms.  The row form (decode): one warp per output
** element n of one row t, its lanes striding over K, so each row reads its
** expert's N rows once (a decode step's top-k experts are read once each).
** The grouped form (prefill, below): rows sorted by expert on the device,
** then tiles of rows times each expert's matrix on tensor cores.
*/
#include "../../../core/quant_fmt.h"
#include "data_k.cuh"
#include "dense_k.cuh"
#include "expert_k.h"

#include <mma.h>

namespace {

constexpr int EK_WARPS = 8; /* output rows per block */

/* The scale of a group as float (sdt f32 / f16 / bf16). */
__device__ __forceinline__ float ek_scale(const pcu_expert &a, int64_t i) { return dn_load(a.scales, a.sdt, i); }

/* Elements k0 .. k0 + 15 (k0 a multiple of 16) of expert e's row n in
 * float, 0 past K. */
template <typename T>
__device__ __forceinline__ void ek_w16(const pcu_expert &a, int64_t e, int64_t n, int64_t k0, float *w) {
    if (a.fmt < 0) {
        const T *wr = (const T *)a.w + e * a.w_se + n * a.w_sn;
#pragma unroll
        for (int i = 0; i < 16; i++) w[i] = k0 + i < a.K ? dn_f32(wr[(k0 + i) * a.w_sk]) : 0.0f;
        return;
    }
    /* K is a multiple of the group size (16 or more): the 16 share a group */
    const pt_qfmt f = (pt_qfmt)a.fmt;
    const int bits = pt_qfmt_bits(f);
    const uint8_t *cr = a.codes + e * a.c_se + n * a.c_sn;
    const int64_t g = k0 / a.G;
    if (f == PT_QFMT_NVFP4) {
        const float s = pt_e4m3_to_float(((const uint8_t *)a.scales)[e * a.s_se + n * a.s_sn + g * a.s_sg]), t = *a.t;
#pragma unroll
        for (int i = 0; i < 16; i++) w[i] = pt_e2m1_to_float(pt_q_code(cr, k0 + i, bits)) * s * t; /* ops.def's order */
    } else {
        const float s = ek_scale(a, e * a.s_se + n * a.s_sn + g * a.s_sg);
        const int base = pt_qfmt_qmin(f) - (a.zeros ? a.zeros[e * a.z_se + n * a.z_sn + g * a.z_sg] : 0);
#pragma unroll
        for (int i = 0; i < 16; i++) w[i] = (float)((int)pt_q_code(cr, k0 + i, bits) + base) * s;
    }
}

template <typename T>
__global__ void expert_k(pcu_expert a) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t n = (int64_t)blockIdx.x * EK_WARPS + warp;
    if (n >= a.N) return;
    const T *x = (const T *)a.x;
    for (int64_t t = blockIdx.y; t < a.T; t += gridDim.y) {
        int64_t e = dk_load_i64(dk_at(a.ids, a.ids_dtype, t * a.ids_stride), a.ids_dtype);
        e = e < 0 ? e + a.E : e;
        float acc = 0.0f;
        if (e >= 0 && e < a.E) {
            const T *xr = x + t * a.ldx;
            if (a.fmt < 0) {
                const T *wr = (const T *)a.w + e * a.w_se + n * a.w_sn;
                for (int64_t k = lane; k < a.K; k += 32) acc += dn_f32(xr[k]) * dn_f32(wr[k * a.w_sk]);
            } else if (a.K % 16 == 0 && a.G % 16 == 0) { /* 16 codes of one group per lane and step */
                for (int64_t k0 = 16 * lane; k0 < a.K; k0 += 16 * 32) {
                    float w[16];
                    ek_w16<T>(a, e, n, k0, w);
#pragma unroll
                    for (int i = 0; i < 16; i++) acc += dn_f32(xr[k0 + i]) * w[i];
                }
            } else {
                pt_qfmt f = (pt_qfmt)a.fmt;
                int bits = pt_qfmt_bits(f), qmin = pt_qfmt_qmin(f);
                const uint8_t *cr = a.codes + e * a.c_se + n * a.c_sn;
                int64_t s0 = e * a.s_se + n * a.s_sn, z0 = e * a.z_se + n * a.z_sn;
                float ts = f == PT_QFMT_NVFP4 ? *a.t : 1.0f;
                for (int64_t k = lane; k < a.K; k += 32) {
                    int64_t g = k / a.G;
                    unsigned u = pt_q_code(cr, k, bits);
                    float w;
                    if (f == PT_QFMT_NVFP4) {
                        w = pt_e2m1_to_float(u) * pt_e4m3_to_float(((const uint8_t *)a.scales)[s0 + g * a.s_sg]) * ts;
                    } else {
                        int zp = a.zeros ? a.zeros[z0 + g * a.z_sg] : 0;
                        w = (float)((int)u + qmin - zp) * ek_scale(a, s0 + g * a.s_sg);
                    }
                    acc += dn_f32(xr[k]) * w;
                }
            }
        }
        acc = dn_warp_sum(acc);
        if (lane == 0) ((T *)a.out)[t * a.N + n] = dn_from<T>(acc);
    }
}

/* ---- the grouped form (prefill) -------------------------------------------
 * The row form above reads a token's expert matrix once per token, so a
 * prefill whose rows share an expert reads it again for each of them.
 * Here the rows are first sorted by expert on the device (eg_sort_k: one
 * block counts each expert's rows, lays the experts' row ranges end to end,
 * cuts them into tiles of EG_BM rows and lists the tiles), then each block
 * of eg_tile_k multiplies one tile's rows, gathered from x, by EG_BN rows
 * of its expert's matrix: the weight is read once per tile instead of once
 * per row, on tensor cores (wmma, f16 / bf16 operands, f32 sums).  W is
 * dequantized in float as ops.def defines it and rounded to the compute
 * dtype for the tensor cores, as the quantized prefill's panels are
 * (quant.c); a float W is already of that dtype.  The grid covers the most
 * tiles T rows can make (T / EG_BM + E); blocks past the listed tiles
 * return at once. */
constexpr int EG_BM = 64, EG_BN = 64, EG_BK = 32, EG_THREADS = 128, EG_LD = EG_BK + 8, EG_CLD = EG_BN + 4;
constexpr int EG_SORT_THREADS = 1024;

/* The plan in device scratch: perm (T), the tiles' expert, first sorted row
 * and row count (maxt each), the tile count. */
struct eg_plan {
    int32_t *perm, *tile_e, *tile_r0, *tile_n, *ntiles;
};

__host__ __device__ inline int64_t eg_max_tiles(int64_t T, int64_t E) { return T / EG_BM + E + 1; }

__host__ __device__ inline eg_plan eg_plan_at(void *scratch, int64_t T, int64_t E) {
    int32_t *p = (int32_t *)scratch;
    int64_t mt = eg_max_tiles(T, E);
    return eg_plan{p, p + T, p + T + mt, p + T + 2 * mt, p + T + 3 * mt};
}

/* Row t's expert in [0, E), or -1 out of bounds. */
__device__ __forceinline__ int32_t eg_expert(const pcu_expert &a, int64_t t) {
    int64_t e = dk_load_i64(dk_at(a.ids, a.ids_dtype, t * a.ids_stride), a.ids_dtype);
    e = e < 0 ? e + a.E : e;
    return e >= 0 && e < a.E ? (int32_t)e : -1;
}

template <typename T>
__global__ void __launch_bounds__(EG_SORT_THREADS) eg_sort_k(pcu_expert a, eg_plan p) {
    extern __shared__ int32_t eg_sm[];
    const int E = (int)a.E, T32 = (int)a.T;
    int32_t *cnt = eg_sm, *off = eg_sm + E, *fill = eg_sm + 2 * E;
    for (int e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0, fill[e] = 0;
    __syncthreads();
    for (int t = threadIdx.x; t < T32; t += blockDim.x) {
        int32_t e = eg_expert(a, t);
        if (e >= 0) atomicAdd(&cnt[e], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int32_t s = 0, nt = 0;
        for (int e = 0; e < E; e++) {
            off[e] = s;
            for (int32_t r0 = 0; r0 < cnt[e]; r0 += EG_BM, nt++)
                p.tile_e[nt] = e, p.tile_r0[nt] = s + r0, p.tile_n[nt] = min(EG_BM, cnt[e] - r0);
            s += cnt[e];
        }
        *p.ntiles = nt;
    }
    __syncthreads();
    for (int t = threadIdx.x; t < T32; t += blockDim.x) {
        int32_t e = eg_expert(a, t);
        if (e >= 0) {
            p.perm[off[e] + atomicAdd(&fill[e], 1)] = t;
        } else { /* out of bounds: a row of zeros */
            T *o = (T *)a.out + (int64_t)t * a.N;
            for (int64_t n = 0; n < a.N; n++) o[n] = dn_from<T>(0.0f);
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(EG_THREADS) eg_tile_k(pcu_expert a, eg_plan p) {
    using namespace nvcuda;
    const int tile = blockIdx.y;
    if (tile >= *p.ntiles) return;
    __shared__ __align__(32) T As[EG_BM * EG_LD];
    __shared__ __align__(32) T Bs[EG_BN * EG_LD];
    __shared__ __align__(32) float Cs[EG_BM * EG_CLD];
    __shared__ int32_t rows[EG_BM];
    const int e = p.tile_e[tile], r0 = p.tile_r0[tile], nr = p.tile_n[tile];
    const int64_t n0 = (int64_t)blockIdx.x * EG_BN;
    const int tid = threadIdx.x, warp = tid >> 5;
    if (tid < EG_BM) rows[tid] = tid < nr ? p.perm[r0 + tid] : -1;
    __syncthreads();
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    /* each thread loads 16 consecutive k of one row of x and one of W */
    const int lr = tid >> 1, lk = (tid & 1) * 16;
    const int32_t xt = rows[lr];
    const int64_t wnr = n0 + lr;
    const T *xr = (const T *)a.x + (int64_t)(xt < 0 ? 0 : xt) * a.ldx;
    /* 16-byte loads where every row start is 16-byte aligned */
    const bool xvec = ((uintptr_t)a.x & 15) == 0 && (a.ldx & 7) == 0;
    const bool wvec = a.fmt < 0 && a.w_sk == 1 && ((uintptr_t)a.w & 15) == 0 && (a.w_se & 7) == 0 && (a.w_sn & 7) == 0;
    for (int64_t k0 = 0; k0 < a.K; k0 += EG_BK) {
        const int64_t k = k0 + lk;
        T *ad = As + lr * EG_LD + lk, *bd = Bs + lr * EG_LD + lk;
        if (xvec && xt >= 0 && k + 16 <= a.K) {
            ((uint4 *)ad)[0] = ((const uint4 *)(xr + k))[0];
            ((uint4 *)ad)[1] = ((const uint4 *)(xr + k))[1];
        } else {
#pragma unroll
            for (int i = 0; i < 16; i++) ad[i] = xt >= 0 && k + i < a.K ? xr[k + i] : dn_from<T>(0.0f);
        }
        if (wvec && wnr < a.N && k + 16 <= a.K) { /* a float W of the compute dtype: copied */
            const T *ws = (const T *)a.w + e * a.w_se + wnr * a.w_sn + k;
            ((uint4 *)bd)[0] = ((const uint4 *)ws)[0];
            ((uint4 *)bd)[1] = ((const uint4 *)ws)[1];
        } else {
            float w[16];
            if (wnr < a.N && k < a.K) ek_w16<T>(a, e, wnr, k, w);
            else
#pragma unroll
                for (int i = 0; i < 16; i++) w[i] = 0.0f;
#pragma unroll
            for (int i = 0; i < 16; i++) bd[i] = dn_from<T>(w[i]);
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < EG_BK; ks += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], As + (wm + 16 * i) * EG_LD + ks, EG_LD);
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::load_matrix_sync(fb[j], Bs + (wn + 16 * j) * EG_LD + ks, EG_LD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(Cs + (wm + 16 * i) * EG_CLD + wn + 16 * j, acc[i][j], EG_CLD, wmma::mem_row_major);
    __syncthreads();
    for (int i = tid; i < EG_BM * EG_BN; i += EG_THREADS) {
        const int r = i / EG_BN, c = i % EG_BN;
        if (r < nr && n0 + c < a.N) ((T *)a.out)[(int64_t)rows[r] * a.N + n0 + c] = dn_from<T>(Cs[r * EG_CLD + c]);
    }
}

} // namespace

/* The grouped form takes f16 / bf16, 32 rows or more (a decode step's
 * top-k rows take the row form), groups of 16 values or a multiple, and
 * at most 4,096 experts (the sort's counters in shared memory). */
#define EG_MIN_T 32

extern "C" size_t pcu_expert_scratch(const pcu_expert *a) {
    if ((a->dtype != PETREL_DTYPE_F16 && a->dtype != PETREL_DTYPE_BF16) || a->T < EG_MIN_T || a->T > INT32_MAX / 4 ||
        a->E < 1 || a->E > 4096 || a->N < 1 || (a->fmt >= 0 && (a->G < 16 || a->G % 16 != 0)))
        return 0;
    int64_t mt = eg_max_tiles(a->T, a->E);
    if (mt > 65535) return 0;
    return (size_t)(a->T + 3 * mt + 1) * sizeof(int32_t);
}

template <typename T> static cudaError_t eg_launch(cudaStream_t s, const pcu_expert *a, void *scratch) {
    eg_plan p = eg_plan_at(scratch, a->T, a->E);
    eg_sort_k<T><<<1, EG_SORT_THREADS, (size_t)(3 * a->E) * sizeof(int32_t), s>>>(*a, p);
    dim3 grid((unsigned)((a->N + EG_BN - 1) / EG_BN), (unsigned)eg_max_tiles(a->T, a->E));
    eg_tile_k<T><<<grid, EG_THREADS, 0, s>>>(*a, p);
    return cudaGetLastError();
}

extern "C" cudaError_t pcu_expert_launch(cudaStream_t s, const pcu_expert *a, void *scratch) {
    if (a->T <= 0 || a->N <= 0) return cudaSuccess;
    if (scratch && pcu_expert_scratch(a)) {
        if (a->dtype == PETREL_DTYPE_F16) return eg_launch<__half>(s, a, scratch);
        return eg_launch<__nv_bfloat16>(s, a, scratch);
    }
    dim3 grid((unsigned)((a->N + EK_WARPS - 1) / EK_WARPS), (unsigned)(a->T < 65535 ? a->T : 65535));
    dim3 block(32 * EK_WARPS);
    switch (a->dtype) {
    case PETREL_DTYPE_F32: expert_k<float><<<grid, block, 0, s>>>(*a); break;
    case PETREL_DTYPE_F16: expert_k<__half><<<grid, block, 0, s>>>(*a); break;
    case PETREL_DTYPE_BF16: expert_k<__nv_bfloat16><<<grid, block, 0, s>>>(*a); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
