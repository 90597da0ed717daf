/*
** binary_k.cu -- CUDA kernels of the binary elementwise family (binary.c):
** arithmetic with alpha and rounding modes, floor division and remainder
** with Python's signs, pow, maximum/minimum, atan2, logical and bitwise
** ops, comparisons.  One kernel per (function, compute type); dense
** same-dtype float arithmetic takes the vector path.
**
** Semantics follow the CPU reference (cpu/ops/binary.c) in the compute
** type the host chose: float for f32/f16/bf16 (torch's opmath), double for
** f64, int64 for integers, which wrap like the fixed-width C types.
*/
#include "binary_k.h"
#include "ew_k.cuh"

/* ---- int64 arithmetic that wraps instead of overflowing ------------------- */

PCU_HD int64_t bin_wadd(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
PCU_HD int64_t bin_wsub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
PCU_HD int64_t bin_wmul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

/* Integer power by squaring; negative exponents give 0 except for bases 1
 * and -1, as torch's powi. */
PCU_HD int64_t bin_powi(int64_t a, int64_t b) {
    if (b < 0) {
        if (a == 1) return 1;
        if (a == -1) return (b % 2 == 0) ? 1 : -1;
        return 0;
    }
    int64_t r = 1;
    while (b) {
        if (b & 1) r = bin_wmul(r, a);
        a = bin_wmul(a, a);
        b >>= 1;
    }
    return r;
}

/* Truncating / flooring division and the two remainders on int64.  torch
 * raises on a zero divisor; a kernel cannot, so it gives 0 (the host
 * rejects a zero scalar divisor before launching). */
template <int FN> PCU_HD int64_t bin_idiv(int64_t a, int64_t b) {
    if (b == 0) return 0;
    /* INT64_MIN / -1 overflows in C; the wrapped answer is -a, remainder 0 */
    int64_t q = b == -1 ? bin_wsub(0, a) : a / b;
    int64_t m = b == -1 ? 0 : a % b;
    bool adjust = m != 0 && (m < 0) != (b < 0);
    if constexpr (FN == PCU_BIN_FMOD) return m;
    else if constexpr (FN == PCU_BIN_DIV_FLOOR) return adjust ? q - 1 : q;
    else if constexpr (FN == PCU_BIN_REMAINDER) return adjust ? m + b : m;
    else return q;
}

/* Python-style floor division of floats, as c10's div_floor_floating:
 * derived from fmod so that 7.5 // 2.5 is exactly 3. */
template <class CT> PCU_HD CT bin_floordiv(CT a, CT b) {
    if (b == 0) return a / b;
    CT mod = ewm_fmod(a, b);
    CT div = (a - mod) / b;
    if (mod != 0 && (b < 0) != (mod < 0)) div -= 1;
    if (div == 0) return ewm_copysign((CT)0, a / b);
    CT fl = ewm_floor(div);
    if (div - fl > (CT)0.5) fl += 1;
    return fl;
}

/* ---- the functions -------------------------------------------------------- */

template <int FN> struct bin_op {
    pcu_bin_params p;

    template <class CT> PCU_HD CT operator()(CT a, CT b) const {
        constexpr bool I = std::is_same<CT, int64_t>::value;
        if constexpr (FN == PCU_BIN_ADD) {
            if constexpr (I) return bin_wadd(a, bin_wmul(p.alpha_i, b));
            else return a + (CT)p.alpha_f * b;
        } else if constexpr (FN == PCU_BIN_SUB) {
            if constexpr (I) return bin_wsub(a, bin_wmul(p.alpha_i, b));
            else return a - (CT)p.alpha_f * b;
        } else if constexpr (FN == PCU_BIN_RSUB) {
            if constexpr (I) return bin_wsub(b, bin_wmul(p.alpha_i, a));
            else return b - (CT)p.alpha_f * a;
        } else if constexpr (FN == PCU_BIN_MUL) {
            if constexpr (I) return bin_wmul(a, b);
            else return a * b;
        } else if constexpr (FN == PCU_BIN_DIV || FN == PCU_BIN_DIV_TRUNC || FN == PCU_BIN_DIV_FLOOR ||
                             FN == PCU_BIN_REMAINDER || FN == PCU_BIN_FMOD) {
            if constexpr (I) {
                return bin_idiv<FN>(a, b);
            } else if constexpr (FN == PCU_BIN_DIV) {
                return a / b;
            } else if constexpr (FN == PCU_BIN_DIV_TRUNC) {
                /* torch truncates the quotient rounded to opmath */
                return ewm_trunc(ew_round(a / b, p.rnd));
            } else if constexpr (FN == PCU_BIN_DIV_FLOOR) {
                return bin_floordiv(a, b);
            } else if constexpr (FN == PCU_BIN_REMAINDER) {
                CT m = ewm_fmod(a, b); /* the result takes the divisor's sign */
                if (m != 0 && (b < 0) != (m < 0)) m += b;
                return m;
            } else {
                return ewm_fmod(a, b);
            }
        } else if constexpr (FN == PCU_BIN_POW) {
            if constexpr (I) return bin_powi(a, b);
            else return ewm_pow(a, b);
        } else if constexpr (FN == PCU_BIN_MAXIMUM || FN == PCU_BIN_MINIMUM) {
            if constexpr (!I) {
                if (a != a || b != b) return a + b; /* NaN propagates */
            }
            if constexpr (FN == PCU_BIN_MAXIMUM) return a > b ? a : b;
            else return a < b ? a : b;
        } else if constexpr (FN == PCU_BIN_ATAN2) {
            if constexpr (I) return (int64_t)atan2((double)a, (double)b);
            else return ewm_atan2(a, b);
        } else if constexpr (FN == PCU_BIN_LAND) {
            return (CT)((a != 0) && (b != 0));
        } else if constexpr (FN == PCU_BIN_LOR) {
            return (CT)((a != 0) || (b != 0));
        } else if constexpr (FN == PCU_BIN_LXOR) {
            return (CT)((a != 0) != (b != 0));
        } else if constexpr (FN == PCU_BIN_BAND || FN == PCU_BIN_BOR || FN == PCU_BIN_BXOR) {
            static_assert(I, "bitwise ops are integer-only");
            if constexpr (FN == PCU_BIN_BAND) return a & b;
            else if constexpr (FN == PCU_BIN_BOR) return a | b;
            else return a ^ b;
        } else if constexpr (FN == PCU_BIN_EQ) {
            return (CT)(a == b);
        } else if constexpr (FN == PCU_BIN_NE) {
            return (CT)(a != b);
        } else if constexpr (FN == PCU_BIN_LT) {
            return (CT)(a < b);
        } else if constexpr (FN == PCU_BIN_LE) {
            return (CT)(a <= b);
        } else if constexpr (FN == PCU_BIN_GT) {
            return (CT)(a > b);
        } else {
            static_assert(FN == PCU_BIN_GE, "unhandled binary function");
            return (CT)(a >= b);
        }
    }
};

/* One element of the general path. */
template <int FN, class CT> struct bin_body {
    bin_op<FN> op;

    template <class IT> PCU_HD void operator()(const pcu_ew &it, IT i) const {
        ew_offs<2, IT> o = ew_offsets<2>(it, i);
        CT a = ew_get<CT>(it.in[0], o.in[0]);
        CT b = ew_get<CT>(it.in[1], o.in[1]);
        if (op.p.rnd_ops) {
            a = ew_round(a, op.p.rnd);
            b = ew_round(b, op.p.rnd);
        }
        ew_st<CT>(it.out, it.out_dtype, o.out, op(a, b));
    }
};

/* ---- launch --------------------------------------------------------------- */

template <int FN> constexpr bool bin_has_float() {
    return FN != PCU_BIN_BAND && FN != PCU_BIN_BOR && FN != PCU_BIN_BXOR;
}
template <int FN> constexpr bool bin_has_int() { return FN != PCU_BIN_DIV; }
/* functions whose result has the operands' float dtype: the vector path */
template <int FN> constexpr bool bin_has_vec() { return FN <= PCU_BIN_ATAN2; }

template <int FN>
static cudaError_t bin_launch(const pcu_ew *it, int ct, const pcu_bin_params *p, cudaStream_t s) {
    bin_op<FN> op = {*p};
    if constexpr (bin_has_float<FN>()) {
        if (ct == PCU_CT_F32) {
            cudaError_t err;
            if constexpr (bin_has_vec<FN>())
                if (!p->rnd_ops && ew_try_vec<2>(it, op, s, &err)) return err;
            return ew_launch(it, bin_body<FN, float>{op}, s);
        }
        if (ct == PCU_CT_F64) return ew_launch(it, bin_body<FN, double>{op}, s);
    }
    if constexpr (bin_has_int<FN>())
        if (ct == PCU_CT_I64) return ew_launch(it, bin_body<FN, int64_t>{op}, s);
    return cudaErrorInvalidValue;
}

extern "C" cudaError_t pcu_launch_binary(const pcu_ew *it, int fn, int ct, const pcu_bin_params *p,
                                     cudaStream_t s) {
    switch (fn) {
#define BIN_CASE(name)                                                                             \
    case PCU_BIN_##name: return bin_launch<PCU_BIN_##name>(it, ct, p, s);
        PCU_BIN_FNS(BIN_CASE)
#undef BIN_CASE
    default: return cudaErrorInvalidValue;
    }
}
