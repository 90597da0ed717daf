/*
** where_k.cu -- CUDA kernels of the selection family (where.c): where /
** masked_fill (a select on a condition) and the clamps.  Values are read
** in the compute type the host chose and stored once in the output dtype,
** as the CPU reference (cpu/ops/where.c) does.
*/
#include "ew_k.cuh"
#include "where_k.h"

template <class CT> struct wh_select_body {
    template <class IT> PCU_HD void operator()(const pcu_ew &it, IT i) const {
        ew_offs<3, IT> o = ew_offsets<3>(it, i);
        CT v = ew_truth(it.in[0], o.in[0]) ? ew_get<CT>(it.in[1], o.in[1]) : ew_get<CT>(it.in[2], o.in[2]);
        ew_st<CT>(it.out, it.out_dtype, o.out, v);
    }
};

/* Clamp x into [lo, hi].  A NaN input stays NaN; with lo > hi the result
 * is hi. */
template <class CT> struct wh_clamp_body {
    pcu_clamp_params p;

    PCU_HD CT clamp(CT x, CT l, CT h) const {
        if constexpr (std::is_same<CT, int64_t>::value) {
            if (p.lo && x < l) x = l;
            if (p.hi && x > h) x = h;
            return x;
        } else {
            if (x != x) return x;
            if (p.lo) {
                if (l != l) {
                    if (p.lo_tensor) return l;
                } else if (x < l) {
                    x = l;
                }
            }
            if (p.hi) {
                if (h != h) {
                    if (p.hi_tensor) return h;
                } else if (x > h) {
                    x = h;
                }
            }
            return x;
        }
    }

    template <class IT> PCU_HD void operator()(const pcu_ew &it, IT i) const {
        ew_offs<3, IT> o = ew_offsets<3>(it, i);
        CT x = ew_get<CT>(it.in[0], o.in[0]);
        CT l = p.lo ? ew_get<CT>(it.in[1], o.in[1]) : x;
        CT h = p.hi ? ew_get<CT>(it.in[2], o.in[2]) : x;
        ew_st<CT>(it.out, it.out_dtype, o.out, clamp(x, l, h));
    }
};

extern "C" cudaError_t pcu_launch_where(const pcu_ew *it, int ct, cudaStream_t s) {
    switch (ct) {
    case PCU_CT_F32: return ew_launch(it, wh_select_body<float>{}, s);
    case PCU_CT_F64: return ew_launch(it, wh_select_body<double>{}, s);
    case PCU_CT_I64: return ew_launch(it, wh_select_body<int64_t>{}, s);
    default: return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t pcu_launch_clamp(const pcu_ew *it, int ct, const pcu_clamp_params *p,
                                    cudaStream_t s) {
    switch (ct) {
    case PCU_CT_F32: return ew_launch(it, wh_clamp_body<float>{*p}, s);
    case PCU_CT_F64: return ew_launch(it, wh_clamp_body<double>{*p}, s);
    case PCU_CT_I64: return ew_launch(it, wh_clamp_body<int64_t>{*p}, s);
    default: return cudaErrorInvalidValue;
    }
}
