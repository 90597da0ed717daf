/*
** binary.c -- CUDA kernels for elementwise binary ops, host side: argument
** reading, torch's result-type rules, shapes and launch.  The kernels are
** in binary_k.cu.  Part of the CUDA backend.
**
** Mirrors the CPU reference (cpu/ops/binary.c) decision for decision: the
** same operand reading (a Python number is a scalar even where the schema
** says Tensor), the same dtype operands are rounded to before computing,
** the same failures.  Only the compute type differs where torch's does:
** float for f32/f16/bf16 ("opmath"), double for f64, int64 for integers.
*/
#include "binary_k.h"
#include "ew.h"

/* How an op reads its schema: which operands are Python scalars, and where
 * alpha / rounding_mode live (-1 = absent). */
typedef struct bin_desc {
    pcu_bin_fn fn;
    bool self_scalar, other_scalar;
    int alpha_arg, mode_arg;
} bin_desc;

/* One operand: a device tensor broadcast to the output shape, or a scalar. */
typedef struct bin_operand {
    const pt_tensor *t;  /* NULL for a scalar */
    pt_tensor view;      /* t broadcast to the output shape */
    bool is_int;         /* scalar only: integral (int or bool) */
    int64_t i;           /* scalar only */
    double f;            /* scalar only */
} bin_operand;

static bool bin_decode(pt_op op, bin_desc *d) {
    *d = (bin_desc){.fn = PCU_BIN_ADD, .alpha_arg = -1, .mode_arg = -1};
    switch (op) {
    case PETREL_OP_ADD_TENSOR: case PETREL_OP_ADD__TENSOR: d->fn = PCU_BIN_ADD; d->alpha_arg = 2; break;
    case PETREL_OP_ADD_SCALAR: case PETREL_OP_ADD__SCALAR:
        d->fn = PCU_BIN_ADD; d->other_scalar = true; d->alpha_arg = 2; break;
    case PETREL_OP_SUB_TENSOR: case PETREL_OP_SUB__TENSOR: d->fn = PCU_BIN_SUB; d->alpha_arg = 2; break;
    case PETREL_OP_SUB_SCALAR: d->fn = PCU_BIN_SUB; d->other_scalar = true; d->alpha_arg = 2; break;
    case PETREL_OP_RSUB_TENSOR: d->fn = PCU_BIN_RSUB; d->alpha_arg = 2; break;
    case PETREL_OP_RSUB_SCALAR: d->fn = PCU_BIN_RSUB; d->other_scalar = true; d->alpha_arg = 2; break;
    case PETREL_OP_MUL_TENSOR: case PETREL_OP_MUL__TENSOR: d->fn = PCU_BIN_MUL; break;
    case PETREL_OP_MUL_SCALAR: case PETREL_OP_MUL__SCALAR: d->fn = PCU_BIN_MUL; d->other_scalar = true; break;
    case PETREL_OP_DIV_TENSOR: case PETREL_OP_DIV__TENSOR: d->fn = PCU_BIN_DIV; break;
    case PETREL_OP_DIV_SCALAR: case PETREL_OP_DIV__SCALAR: d->fn = PCU_BIN_DIV; d->other_scalar = true; break;
    case PETREL_OP_DIV_TENSOR_MODE: d->fn = PCU_BIN_DIV; d->mode_arg = 2; break;
    case PETREL_OP_DIV_SCALAR_MODE: d->fn = PCU_BIN_DIV; d->other_scalar = true; d->mode_arg = 2; break;
    case PETREL_OP_FLOOR_DIVIDE: d->fn = PCU_BIN_DIV_FLOOR; break;
    case PETREL_OP_FLOOR_DIVIDE_SCALAR: d->fn = PCU_BIN_DIV_FLOOR; d->other_scalar = true; break;
    case PETREL_OP_REMAINDER_TENSOR: d->fn = PCU_BIN_REMAINDER; break;
    case PETREL_OP_REMAINDER_SCALAR: d->fn = PCU_BIN_REMAINDER; d->other_scalar = true; break;
    case PETREL_OP_FMOD_TENSOR: d->fn = PCU_BIN_FMOD; break;
    case PETREL_OP_FMOD_SCALAR: d->fn = PCU_BIN_FMOD; d->other_scalar = true; break;
    case PETREL_OP_POW_TENSOR_TENSOR: d->fn = PCU_BIN_POW; break;
    case PETREL_OP_POW_TENSOR_SCALAR: d->fn = PCU_BIN_POW; d->other_scalar = true; break;
    case PETREL_OP_POW_SCALAR: d->fn = PCU_BIN_POW; d->self_scalar = true; break;
    case PETREL_OP_MAXIMUM: d->fn = PCU_BIN_MAXIMUM; break;
    case PETREL_OP_MINIMUM: d->fn = PCU_BIN_MINIMUM; break;
    case PETREL_OP_ATAN2: d->fn = PCU_BIN_ATAN2; break;
    case PETREL_OP_LOGICAL_AND: d->fn = PCU_BIN_LAND; break;
    case PETREL_OP_LOGICAL_OR: d->fn = PCU_BIN_LOR; break;
    case PETREL_OP_LOGICAL_XOR: d->fn = PCU_BIN_LXOR; break;
    case PETREL_OP_BITWISE_AND_TENSOR: d->fn = PCU_BIN_BAND; break;
    case PETREL_OP_BITWISE_AND_SCALAR: d->fn = PCU_BIN_BAND; d->other_scalar = true; break;
    case PETREL_OP_BITWISE_OR_TENSOR: d->fn = PCU_BIN_BOR; break;
    case PETREL_OP_BITWISE_OR_SCALAR: d->fn = PCU_BIN_BOR; d->other_scalar = true; break;
    case PETREL_OP_BITWISE_XOR_TENSOR: d->fn = PCU_BIN_BXOR; break;
    case PETREL_OP_BITWISE_XOR_SCALAR: d->fn = PCU_BIN_BXOR; d->other_scalar = true; break;
    case PETREL_OP_AND_TENSOR: d->fn = PCU_BIN_BAND; break; /* Python's & on tensors */
    case PETREL_OP_OR_TENSOR: d->fn = PCU_BIN_BOR; break;
    case PETREL_OP_XOR_TENSOR: d->fn = PCU_BIN_BXOR; break;
    case PETREL_OP_AND_SCALAR: d->fn = PCU_BIN_BAND; d->other_scalar = true; break;
    case PETREL_OP_OR_SCALAR: d->fn = PCU_BIN_BOR; d->other_scalar = true; break;
    case PETREL_OP_XOR_SCALAR: d->fn = PCU_BIN_BXOR; d->other_scalar = true; break;
    case PETREL_OP_EQ_TENSOR: d->fn = PCU_BIN_EQ; break;
    case PETREL_OP_EQ_SCALAR: d->fn = PCU_BIN_EQ; d->other_scalar = true; break;
    case PETREL_OP_NE_TENSOR: d->fn = PCU_BIN_NE; break;
    case PETREL_OP_NE_SCALAR: d->fn = PCU_BIN_NE; d->other_scalar = true; break;
    case PETREL_OP_LT_TENSOR: d->fn = PCU_BIN_LT; break;
    case PETREL_OP_LT_SCALAR: d->fn = PCU_BIN_LT; d->other_scalar = true; break;
    case PETREL_OP_LE_TENSOR: d->fn = PCU_BIN_LE; break;
    case PETREL_OP_LE_SCALAR: d->fn = PCU_BIN_LE; d->other_scalar = true; break;
    case PETREL_OP_GT_TENSOR: d->fn = PCU_BIN_GT; break;
    case PETREL_OP_GT_SCALAR: d->fn = PCU_BIN_GT; d->other_scalar = true; break;
    case PETREL_OP_GE_TENSOR: d->fn = PCU_BIN_GE; break;
    case PETREL_OP_GE_SCALAR: d->fn = PCU_BIN_GE; d->other_scalar = true; break;
    default: return false;
    }
    return true;
}

static bool bin_is_compare(pcu_bin_fn f) { return f >= PCU_BIN_EQ && f <= PCU_BIN_GE; }
static bool bin_is_logical(pcu_bin_fn f) { return f == PCU_BIN_LAND || f == PCU_BIN_LOR || f == PCU_BIN_LXOR; }
static bool bin_is_bitwise(pcu_bin_fn f) { return f == PCU_BIN_BAND || f == PCU_BIN_BOR || f == PCU_BIN_BXOR; }
static bool bin_is_intdiv(pcu_bin_fn f) {
    return f == PCU_BIN_DIV_TRUNC || f == PCU_BIN_DIV_FLOOR || f == PCU_BIN_REMAINDER || f == PCU_BIN_FMOD;
}

/* A Python number where the schema says Tensor (export writes x + 2 as
 * add.Tensor(x, 2)) is read as a scalar, so it promotes like torch's
 * wrapped numbers rather than like a 0-d tensor. */
static bool bin_arg_is_number(const pt_node *n, int a) {
    if (a >= n->nargs) return false;
    pt_arg_kind k = n->args[a].kind;
    return (k == PT_ARG_INT || k == PT_ARG_FLOAT || k == PT_ARG_BOOL) && n->args[a].n == 1;
}

static petrel_status bin_read_operand(pt_exec *ex, const pt_node *n, int a, bool scalar,
                                      bin_operand *o) {
    memset(o, 0, sizeof *o);
    if (scalar || bin_arg_is_number(n, a)) {
        o->is_int = pk_scalar_is_int(ex, n, a);
        o->f = pk_float(ex, n, a);
        o->i = ew_scalar_i64(ex, n, a);
        return PETREL_OK;
    }
    o->t = pk_tensor(ex, n, a);
    if (!o->t) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument %d must be a tensor", a);
    return PETREL_OK;
}

/* The dtype operands are rounded to before a float computation: torch
 * casts both operands to their common dtype (torch.result_type), except
 * that mul and div of half/bfloat16 read a scalar operand in float
 * ("opmath"), so half * 0.1 uses 0.1f while half + 0.1 uses half(0.1). */
static petrel_dtype bin_round_dtype(pcu_bin_fn fn, const bin_operand *x, const bin_operand *y,
                                   petrel_dtype odt) {
    ew_rtype rt;
    ew_rt_init(&rt);
    const bin_operand *ops[2] = {x, y};
    for (int k = 0; k < 2; k++) {
        if (ops[k]->t) ew_rt_tensor(&rt, ops[k]->t);
        else ew_rt_scalar(&rt, ops[k]->is_int);
    }
    petrel_dtype common = ew_rt_result(&rt);
    if (bin_is_compare(fn)) return common;
    if (bin_is_logical(fn)) return PETREL_DTYPE_F64; /* only truthiness matters */
    /* integer inputs of a float op (true division) are cast to the output */
    petrel_dtype base = ew_is_float(common) ? common : odt;
    if (fn == PCU_BIN_MUL || fn == PCU_BIN_DIV || fn == PCU_BIN_DIV_TRUNC || fn == PCU_BIN_DIV_FLOOR)
        return ew_opmath(base);
    return base;
}

/* Whether a tensor operand of dtype dt must be rounded to rnd inside a
 * float kernel: float kernels read every dtype as float already. */
static bool bin_needs_round(petrel_dtype dt, petrel_dtype rnd, int ct) {
    if (dt == rnd || rnd == PETREL_DTYPE_F64) return false;
    return !(ct == PCU_CT_F32 && rnd == PETREL_DTYPE_F32);
}

static void bin_add_operand(pcu_ew *it, const bin_operand *o, bool in_float, petrel_dtype rnd) {
    if (o->t) {
        pcu_ew_tensor(it, &o->view);
        return;
    }
    double v = o->is_int ? (double)o->i : o->f;
    pcu_ew_scalar(it, o->is_int ? PETREL_DTYPE_I64 : PETREL_DTYPE_F64, in_float ? ew_round(v, rnd) : v,
                  o->i);
}

/*
** cuda_k_binary -- every op of the "binary" family in ops.def, as
** cpu_k_binary computes it.  Fails on incompatible shapes, a zero integer
** scalar divisor, bitwise ops on floats and unknown rounding modes; a zero
** integer divisor inside a tensor cannot be seen from the host and gives 0.
*/
petrel_status cuda_k_binary(pt_exec *ex, const pt_node *n) {
    bin_desc d;
    if (!bin_decode(n->op, &d)) return pk_fail(ex, PETREL_ERR_RUNTIME, "not a binary op");
    if (d.mode_arg >= 0) {
        const char *mode = pk_str(ex, n, d.mode_arg);
        if (!mode) d.fn = PCU_BIN_DIV;
        else if (strcmp(mode, "trunc") == 0) d.fn = PCU_BIN_DIV_TRUNC;
        else if (strcmp(mode, "floor") == 0) d.fn = PCU_BIN_DIV_FLOOR;
        else return pk_fail(ex, PETREL_ERR_RUNTIME, "div: unknown rounding_mode '%s'", mode);
    }

    bin_operand x, y;
    PT_TRY(bin_read_operand(ex, n, 0, d.self_scalar, &x));
    PT_TRY(bin_read_operand(ex, n, 1, d.other_scalar, &y));

    /* output shape: broadcast of the tensor operands (a scalar is rank 0) */
    int rank = 0;
    int64_t shape[PETREL_MAX_RANK];
    const pt_tensor *ta = x.t, *tb = y.t;
    if (ta && tb) {
        if (!pt_broadcast_shape(ta->rank, ta->shape, tb->rank, tb->shape, &rank, shape))
            return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
    } else if (ta || tb) {
        const pt_tensor *t = ta ? ta : tb;
        rank = t->rank;
        memcpy(shape, t->shape, sizeof(int64_t) * (size_t)rank);
    }
    if (ta && !pt_broadcast_to(ta, rank, shape, &x.view))
        return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
    if (tb && !pt_broadcast_to(tb, rank, shape, &y.view))
        return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");

    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    petrel_dtype odt = out->dtype;

    petrel_dtype rnd = bin_round_dtype(d.fn, &x, &y, odt);
    bool cmp = bin_is_compare(d.fn) || bin_is_logical(d.fn);
    bool in_float = ew_is_float(cmp ? rnd : odt);
    if (bin_is_bitwise(d.fn) && in_float)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "bitwise ops need integer or bool tensors");
    if (!in_float && d.fn == PCU_BIN_DIV)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "true division needs a float output");
    if (!in_float && d.fn == PCU_BIN_POW && !y.t && y.i < 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME,
                       "integers to negative integer powers are not allowed");
    if (!in_float && bin_is_intdiv(d.fn) && !y.t && y.i == 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "integer division by zero");

    int ct = PCU_CT_I64;
    if (in_float)
        ct = rnd == PETREL_DTYPE_F64 || (!cmp && odt == PETREL_DTYPE_F64) ? PCU_CT_F64 : PCU_CT_F32;

    /* alpha is only meaningful for add/sub/rsub; torch reads it in the
     * compute type of the op */
    pcu_bin_params p = {.alpha_f = 1, .alpha_i = 1, .rnd = (int32_t)rnd};
    if (d.alpha_arg >= 0 && d.alpha_arg < n->nargs && !pk_is_none(ex, n, d.alpha_arg)) {
        p.alpha_f = pk_float(ex, n, d.alpha_arg);
        p.alpha_i = ew_scalar_i64(ex, n, d.alpha_arg);
    }
    p.rnd_ops = in_float && ((x.t && bin_needs_round(x.t->dtype, rnd, ct)) ||
                             (y.t && bin_needs_round(y.t->dtype, rnd, ct)));

    pcu_ew it;
    pcu_ew_begin(&it, out);
    bin_add_operand(&it, &x, in_float, rnd);
    bin_add_operand(&it, &y, in_float, rnd);
    pcu_ew_end(&it);
    if (it.numel == 0) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_launch_binary(&it, d.fn, ct, &p, pcu_stream(ex)), "binary kernel");
    return PETREL_OK;
}
