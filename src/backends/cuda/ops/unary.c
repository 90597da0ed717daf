/*
** unary.c -- CUDA kernels for elementwise unary ops, host side: op
** decoding, parameters, dtype checks and launch.  The kernels are in
** unary_k.cu.  Part of the CUDA backend.
**
** Mirrors the CPU reference (cpu/ops/unary.c): float outputs are computed
** from the input read as float (f32/f16/bf16 outputs) or double (f64), an
** integer input being cast like torch casts it; integer outputs exist only
** for the ops torch defines on integers and are computed in int64;
** predicates (logical_not, isnan, isinf) store 0/1.
*/
#include "ew.h"
#include "unary_k.h"

/* The kernel function of an op of the unary family; false for others. */
static bool un_decode(pt_op op, pcu_un_fn *fn) {
    switch (op) {
    case PETREL_OP_ABS: *fn = PCU_UN_ABS; break;
    case PETREL_OP_NEG: *fn = PCU_UN_NEG; break;
    case PETREL_OP_EXP: *fn = PCU_UN_EXP; break;
    case PETREL_OP_EXPM1: *fn = PCU_UN_EXPM1; break;
    case PETREL_OP_LOG: *fn = PCU_UN_LOG; break;
    case PETREL_OP_LOG2: *fn = PCU_UN_LOG2; break;
    case PETREL_OP_LOG10: *fn = PCU_UN_LOG10; break;
    case PETREL_OP_LOG1P: *fn = PCU_UN_LOG1P; break;
    case PETREL_OP_SQRT: *fn = PCU_UN_SQRT; break;
    case PETREL_OP_RSQRT: *fn = PCU_UN_RSQRT; break;
    case PETREL_OP_SIN: *fn = PCU_UN_SIN; break;
    case PETREL_OP_COS: *fn = PCU_UN_COS; break;
    case PETREL_OP_TAN: *fn = PCU_UN_TAN; break;
    case PETREL_OP_ASIN: *fn = PCU_UN_ASIN; break;
    case PETREL_OP_ACOS: *fn = PCU_UN_ACOS; break;
    case PETREL_OP_ATAN: *fn = PCU_UN_ATAN; break;
    case PETREL_OP_SINH: *fn = PCU_UN_SINH; break;
    case PETREL_OP_COSH: *fn = PCU_UN_COSH; break;
    case PETREL_OP_TANH: *fn = PCU_UN_TANH; break;
    case PETREL_OP_ASINH: *fn = PCU_UN_ASINH; break;
    case PETREL_OP_ACOSH: *fn = PCU_UN_ACOSH; break;
    case PETREL_OP_ATANH: *fn = PCU_UN_ATANH; break;
    case PETREL_OP_SIGMOID: *fn = PCU_UN_SIGMOID; break;
    case PETREL_OP_ERF: *fn = PCU_UN_ERF; break;
    case PETREL_OP_FLOOR: *fn = PCU_UN_FLOOR; break;
    case PETREL_OP_CEIL: *fn = PCU_UN_CEIL; break;
    case PETREL_OP_ROUND: *fn = PCU_UN_ROUND; break;
    case PETREL_OP_ROUND_DECIMALS: *fn = PCU_UN_ROUND_DECIMALS; break;
    case PETREL_OP_TRUNC: *fn = PCU_UN_TRUNC; break;
    case PETREL_OP_RECIPROCAL: *fn = PCU_UN_RECIPROCAL; break;
    case PETREL_OP_SIGN: *fn = PCU_UN_SIGN; break;
    case PETREL_OP_SQUARE: *fn = PCU_UN_SQUARE; break;
    case PETREL_OP_RELU: case PETREL_OP_RELU_: *fn = PCU_UN_RELU; break;
    case PETREL_OP_SILU: case PETREL_OP_SILU_: *fn = PCU_UN_SILU; break;
    case PETREL_OP_GELU: *fn = PCU_UN_GELU; break;
    case PETREL_OP_HARDSWISH: case PETREL_OP_HARDSWISH_: *fn = PCU_UN_HARDSWISH; break;
    case PETREL_OP_HARDSIGMOID: case PETREL_OP_HARDSIGMOID_: *fn = PCU_UN_HARDSIGMOID; break;
    case PETREL_OP_LEAKY_RELU: *fn = PCU_UN_LEAKY_RELU; break;
    case PETREL_OP_ELU: *fn = PCU_UN_ELU; break;
    case PETREL_OP_SOFTPLUS: *fn = PCU_UN_SOFTPLUS; break;
    case PETREL_OP_MISH: *fn = PCU_UN_MISH; break;
    case PETREL_OP_RELU6: *fn = PCU_UN_RELU6; break;
    case PETREL_OP_SELU: *fn = PCU_UN_SELU; break;
    case PETREL_OP_CELU: *fn = PCU_UN_CELU; break;
    case PETREL_OP_LOGICAL_NOT: *fn = PCU_UN_LOGICAL_NOT; break;
    case PETREL_OP_BITWISE_NOT: *fn = PCU_UN_BITWISE_NOT; break;
    case PETREL_OP_ISNAN: *fn = PCU_UN_ISNAN; break;
    case PETREL_OP_ISINF: *fn = PCU_UN_ISINF; break;
    default: return false;
    }
    return true;
}

/* The functions torch defines on integer outputs (cpu/ops/unary.c un_i64). */
static bool un_has_int(pcu_un_fn fn) {
    switch (fn) {
    case PCU_UN_ABS: case PCU_UN_NEG: case PCU_UN_SIGN: case PCU_UN_SQUARE: case PCU_UN_RELU:
    case PCU_UN_FLOOR: case PCU_UN_CEIL: case PCU_UN_ROUND: case PCU_UN_TRUNC:
    case PCU_UN_BITWISE_NOT: return true;
    default: return false;
    }
}

/* Read the op's extra arguments into p (and pick gelu's form). */
static petrel_status un_params(pt_exec *ex, const pt_node *n, pcu_un_fn *fn, pcu_un_params *p) {
    switch (*fn) {
    case PCU_UN_GELU: {
        const char *a = pk_str(ex, n, 1);
        if (a && strcmp(a, "tanh") == 0) *fn = PCU_UN_GELU_TANH;
        else if (a && strcmp(a, "none") != 0)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "gelu: unknown approximate '%s'", a);
        break;
    }
    case PCU_UN_LEAKY_RELU:
    case PCU_UN_CELU: p->p0 = pk_float(ex, n, 1); break;
    case PCU_UN_ROUND_DECIMALS:
        p->decimals = pk_int(ex, n, 1);
        p->p0 = pow(10.0, (double)(p->decimals < 0 ? -p->decimals : p->decimals));
        break;
    case PCU_UN_ELU:
        p->p0 = pk_float(ex, n, 1);
        p->p1 = pk_float(ex, n, 2);
        p->p2 = pk_float(ex, n, 3);
        break;
    case PCU_UN_SOFTPLUS:
        p->p0 = pk_float(ex, n, 1);
        p->p1 = pk_float(ex, n, 2);
        break;
    default: break;
    }
    return PETREL_OK;
}

/*
** cuda_k_unary -- every op of the "unary" family in ops.def (in-place
** variants compute like their functional forms), as cpu_k_unary computes
** it.  Writes one fresh output of the input's shape and the exported dtype.
** Fails for an unknown gelu approximation or an op applied to a dtype
** torch does not define it on (e.g. bitwise_not of a float tensor).
*/
petrel_status cuda_k_unary(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
    pcu_un_fn fn;
    if (!un_decode(n->op, &fn)) return pk_fail(ex, PETREL_ERR_RUNTIME, "not a unary op");
    pcu_un_params p = {.bool_in = x->dtype == PETREL_DTYPE_BOOL};
    PT_TRY(un_params(ex, n, &fn, &p));

    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    petrel_dtype odt = out->dtype;
    bool predicate = fn == PCU_UN_LOGICAL_NOT || fn == PCU_UN_ISNAN || fn == PCU_UN_ISINF;
    if (fn == PCU_UN_BITWISE_NOT && ew_is_float(x->dtype))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "bitwise_not needs an integer or bool tensor");
    if (!predicate && !ew_is_float(odt) && !un_has_int(fn))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "op not defined for integer dtype %s",
                       petrel_dtype_name(odt));

    /* predicates read the input as float, or double so that no f64 value
     * changes class (1e300 is finite, 1e-300 is true) */
    petrel_dtype ct_dt = predicate ? x->dtype : odt;
    int ct = ct_dt == PETREL_DTYPE_F64 ? PCU_CT_F64
             : (predicate || ew_is_float(odt)) ? PCU_CT_F32 : PCU_CT_I64;

    pcu_ew it;
    pcu_ew_begin(&it, out);
    if (pcu_is_host_scalar(x))
        pcu_ew_scalar(&it, x->dtype, pt_load_f64(x->data, x->dtype), pt_load_i64(x->data, x->dtype));
    else
        pcu_ew_tensor(&it, x);
    pcu_ew_end(&it);
    if (it.numel == 0) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_launch_unary(&it, fn, ct, &p, pcu_stream(ex)), "unary kernel");
    return PETREL_OK;
}
