/*
** unary_k.cu -- CUDA kernels of the unary elementwise family (unary.c):
** math functions, activations, rounding, sign, bitwise/logical not and the
** isnan/isinf predicates.  One kernel per (function, compute type); dense
** f32/f16/bf16 tensors take the vector path.
**
** Float functions compute in float for f32/f16/bf16 and in double for f64,
** with CUDA's precise math functions (erff, expf, ..., no fast-math
** intrinsics), and round once to the output dtype, as torch does.  The
** formulas are the CPU reference's (cpu/ops/unary.c).
*/
#include "ew_k.cuh"
#include "unary_k.h"

/* ---- float functions ------------------------------------------------------- */

template <int FN> struct un_op {
    pcu_un_params p;

    template <class CT> PCU_HD CT operator()(CT x) const {
        const CT zero = 0, one = 1;
        if constexpr (FN == PCU_UN_ABS) return ewm_fabs(x);
        else if constexpr (FN == PCU_UN_NEG) return -x;
        else if constexpr (FN == PCU_UN_EXP) return ewm_exp(x);
        else if constexpr (FN == PCU_UN_EXPM1) return ewm_expm1(x);
        else if constexpr (FN == PCU_UN_LOG) return ewm_log(x);
        else if constexpr (FN == PCU_UN_LOG2) return ewm_log2(x);
        else if constexpr (FN == PCU_UN_LOG10) return ewm_log10(x);
        else if constexpr (FN == PCU_UN_LOG1P) return ewm_log1p(x);
        else if constexpr (FN == PCU_UN_SQRT) return ewm_sqrt(x);
        else if constexpr (FN == PCU_UN_RSQRT) return one / ewm_sqrt(x);
        else if constexpr (FN == PCU_UN_SIN) return ewm_sin(x);
        else if constexpr (FN == PCU_UN_COS) return ewm_cos(x);
        else if constexpr (FN == PCU_UN_TAN) return ewm_tan(x);
        else if constexpr (FN == PCU_UN_ASIN) return ewm_asin(x);
        else if constexpr (FN == PCU_UN_ACOS) return ewm_acos(x);
        else if constexpr (FN == PCU_UN_ATAN) return ewm_atan(x);
        else if constexpr (FN == PCU_UN_SINH) return ewm_sinh(x);
        else if constexpr (FN == PCU_UN_COSH) return ewm_cosh(x);
        else if constexpr (FN == PCU_UN_TANH) return ewm_tanh(x);
        else if constexpr (FN == PCU_UN_ASINH) return ewm_asinh(x);
        else if constexpr (FN == PCU_UN_ACOSH) return ewm_acosh(x);
        else if constexpr (FN == PCU_UN_ATANH) return ewm_atanh(x);
        else if constexpr (FN == PCU_UN_SIGMOID) return one / (one + ewm_exp(-x));
        else if constexpr (FN == PCU_UN_ERF) return ewm_erf(x);
        else if constexpr (FN == PCU_UN_FLOOR) return ewm_floor(x);
        else if constexpr (FN == PCU_UN_CEIL) return ewm_ceil(x);
        else if constexpr (FN == PCU_UN_ROUND) return ewm_rint(x); /* half to even */
        else if constexpr (FN == PCU_UN_ROUND_DECIMALS) {
            /* torch: rint(x * 10^d) / 10^d, or rint(x / 10^-d) * 10^-d */
            CT tp = (CT)p.p0;
            return p.decimals >= 0 ? ewm_rint(x * tp) / tp : ewm_rint(x / tp) * tp;
        }
        else if constexpr (FN == PCU_UN_TRUNC) return ewm_trunc(x);
        else if constexpr (FN == PCU_UN_RECIPROCAL) return one / x;
        else if constexpr (FN == PCU_UN_SIGN) return (CT)((zero < x) - (x < zero)); /* NaN -> 0 */
        else if constexpr (FN == PCU_UN_SQUARE) return x * x;
        else if constexpr (FN == PCU_UN_RELU) return x != x ? x : (x > zero ? x : zero);
        else if constexpr (FN == PCU_UN_SILU) return x / (one + ewm_exp(-x));
        else if constexpr (FN == PCU_UN_GELU) return (CT)0.5 * x * (one + ewm_erf(x * (CT)0.7071067811865476));
        else if constexpr (FN == PCU_UN_GELU_TANH) {
            const CT k = (CT)0.7978845608028654; /* sqrt(2 / pi) */
            return (CT)0.5 * x * (one + ewm_tanh(k * (x + (CT)0.044715 * x * x * x)));
        }
        else if constexpr (FN == PCU_UN_HARDSWISH) return x * ewm_fmin(ewm_fmax(x + (CT)3, zero), (CT)6) / (CT)6;
        else if constexpr (FN == PCU_UN_HARDSIGMOID) return ewm_fmin(ewm_fmax(x + (CT)3, zero), (CT)6) / (CT)6;
        else if constexpr (FN == PCU_UN_LEAKY_RELU) return x > zero ? x : x * (CT)p.p0;
        else if constexpr (FN == PCU_UN_ELU)
            return x > zero ? x * (CT)p.p1 : ewm_expm1(x * (CT)p.p2) * (CT)p.p0 * (CT)p.p1;
        else if constexpr (FN == PCU_UN_SOFTPLUS)
            return x * (CT)p.p0 > (CT)p.p1 ? x : ewm_log1p(ewm_exp(x * (CT)p.p0)) / (CT)p.p0;
        else if constexpr (FN == PCU_UN_MISH) return x * ewm_tanh(ewm_log1p(ewm_exp(x)));
        else if constexpr (FN == PCU_UN_RELU6) return x != x ? x : ewm_fmin(ewm_fmax(x, zero), (CT)6);
        else if constexpr (FN == PCU_UN_SELU) {
            /* constants from the SELU paper, as torch uses them */
            const CT alpha = (CT)1.6732632423543772848170429916717;
            const CT scale = (CT)1.0507009873554804934193349852946;
            return scale * (x > zero ? x : alpha * ewm_expm1(x));
        }
        else {
            static_assert(FN == PCU_UN_CELU, "unhandled float unary function");
            return x > zero ? x : (CT)p.p0 * ewm_expm1(x / (CT)p.p0);
        }
    }
};

/* ---- integer functions ----------------------------------------------------- */

/* The ops torch defines on integers, in int64 (wrapping); floor, ceil, round
 * and trunc are the identity there and launch as PCU_UN_TRUNC. */
template <int FN> struct un_iop {
    pcu_un_params p;

    PCU_HD int64_t operator()(int64_t x) const {
        if constexpr (FN == PCU_UN_ABS) return x < 0 ? (int64_t)((uint64_t)0 - (uint64_t)x) : x;
        else if constexpr (FN == PCU_UN_NEG) return (int64_t)((uint64_t)0 - (uint64_t)x);
        else if constexpr (FN == PCU_UN_SIGN) return (0 < x) - (x < 0);
        else if constexpr (FN == PCU_UN_SQUARE) return (int64_t)((uint64_t)x * (uint64_t)x);
        else if constexpr (FN == PCU_UN_RELU) return x > 0 ? x : 0;
        else if constexpr (FN == PCU_UN_TRUNC) return x;
        else {
            static_assert(FN == PCU_UN_BITWISE_NOT, "unhandled integer unary function");
            return p.bool_in ? (int64_t)!x : ~x;
        }
    }
};

template <class CT, class F> struct un_body {
    F op;

    template <class IT> PCU_HD void operator()(const pcu_ew &it, IT i) const {
        ew_offs<1, IT> o = ew_offsets<1>(it, i);
        ew_st<CT>(it.out, it.out_dtype, o.out, op(ew_get<CT>(it.in[0], o.in[0])));
    }
};

/* isnan / isinf / logical_not: the input read as CT, the answer stored as
 * 0 or 1 in the output dtype. */
template <int FN, class CT> struct un_pred_body {
    template <class IT> PCU_HD void operator()(const pcu_ew &it, IT i) const {
        ew_offs<1, IT> o = ew_offsets<1>(it, i);
        CT x = ew_get<CT>(it.in[0], o.in[0]);
        int64_t r;
        if constexpr (FN == PCU_UN_LOGICAL_NOT) r = x == 0;
        else if constexpr (FN == PCU_UN_ISNAN) r = x != x;
        else r = ewm_fabs(x) == (CT)INFINITY;
        ew_st<int64_t>(it.out, it.out_dtype, o.out, r);
    }
};

/* ---- launch --------------------------------------------------------------- */

template <int FN> constexpr bool un_is_pred() {
    return FN == PCU_UN_LOGICAL_NOT || FN == PCU_UN_ISNAN || FN == PCU_UN_ISINF;
}
template <int FN> constexpr bool un_has_float() { return FN < PCU_UN_BITWISE_NOT; }

template <int FN>
static cudaError_t un_launch(const pcu_ew *it, int ct, const pcu_un_params *p, cudaStream_t s) {
    if constexpr (un_is_pred<FN>()) {
        if (ct == PCU_CT_F64) return ew_launch(it, un_pred_body<FN, double>{}, s);
        return ew_launch(it, un_pred_body<FN, float>{}, s);
    } else if constexpr (un_has_float<FN>()) {
        un_op<FN> op = {*p};
        if (ct == PCU_CT_F32) {
            cudaError_t err;
            if (ew_try_vec<1>(it, op, s, &err)) return err;
            return ew_launch(it, un_body<float, un_op<FN>>{op}, s);
        }
        if (ct == PCU_CT_F64) return ew_launch(it, un_body<double, un_op<FN>>{op}, s);
    }
    return cudaErrorInvalidValue;
}

template <int FN>
static cudaError_t un_int_launch(const pcu_ew *it, const pcu_un_params *p, cudaStream_t s) {
    return ew_launch(it, un_body<int64_t, un_iop<FN>>{{*p}}, s);
}

extern "C" cudaError_t pcu_launch_unary(const pcu_ew *it, int fn, int ct, const pcu_un_params *p,
                                    cudaStream_t s) {
    if (ct == PCU_CT_I64) {
        switch (fn) {
        case PCU_UN_ABS: return un_int_launch<PCU_UN_ABS>(it, p, s);
        case PCU_UN_NEG: return un_int_launch<PCU_UN_NEG>(it, p, s);
        case PCU_UN_SIGN: return un_int_launch<PCU_UN_SIGN>(it, p, s);
        case PCU_UN_SQUARE: return un_int_launch<PCU_UN_SQUARE>(it, p, s);
        case PCU_UN_RELU: return un_int_launch<PCU_UN_RELU>(it, p, s);
        case PCU_UN_FLOOR:
        case PCU_UN_CEIL:
        case PCU_UN_ROUND:
        case PCU_UN_TRUNC: return un_int_launch<PCU_UN_TRUNC>(it, p, s);
        case PCU_UN_BITWISE_NOT: return un_int_launch<PCU_UN_BITWISE_NOT>(it, p, s);
        default: break; /* predicates read integers as float */
        }
    }
    switch (fn) {
#define UN_CASE(name)                                                                              \
    case PCU_UN_##name: return un_launch<PCU_UN_##name>(it, ct, p, s);
        PCU_UN_FNS(UN_CASE)
#undef UN_CASE
    default: return cudaErrorInvalidValue;
    }
}
