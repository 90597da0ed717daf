/*
** expert_k.cu -- device kernel of the MoE experts' products behind
** expert_k.h.  A first, plain form: one warp per output element row n of
** one token row t, its lanes striding over K, so each token reads its
** expert's N rows once (a decode step's top-k experts are read once each;
** a prefill's rows that share an expert read it again, mostly from L2).
*/
#include "../../../core/quant_fmt.h"
#include "data_k.cuh"
#include "dense_k.cuh"
#include "expert_k.h"

namespace {

constexpr int EK_WARPS = 8; /* output rows per block */

/* The scale of a group as float (sdt f32 / f16 / bf16). */
__device__ __forceinline__ float ek_scale(const pcu_expert &a, int64_t i) { return dn_load(a.scales, a.sdt, i); }

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

} // namespace

extern "C" cudaError_t pcu_expert_launch(cudaStream_t s, const pcu_expert *a) {
    if (a->T <= 0 || a->N <= 0) return cudaSuccess;
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
