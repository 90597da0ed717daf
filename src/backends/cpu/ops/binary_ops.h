/*
** binary_ops.h -- the binary family's op table and host-side operand
** rules, shared by the CPU reference (binary.c) and the CUDA backend
** (cuda/ops/binary.c) so both read an op the same way: which function it
** computes, which operands are Python scalars, where alpha and
** rounding_mode live, torch's rounding dtype, and the broadcast shape.
*/
#ifndef PETREL_CPU_BINARY_OPS_H
#define PETREL_CPU_BINARY_OPS_H

#include "ew_util.h"

typedef enum bin_fn {
    BIN_ADD, BIN_SUB, BIN_RSUB, BIN_MUL, BIN_DIV, BIN_DIV_TRUNC, BIN_DIV_FLOOR,
    BIN_REMAINDER, BIN_FMOD, BIN_POW, BIN_MAXIMUM, BIN_MINIMUM, BIN_ATAN2,
    BIN_LAND, BIN_LOR, BIN_LXOR, BIN_BAND, BIN_BOR, BIN_BXOR,
    BIN_EQ, BIN_NE, BIN_LT, BIN_LE, BIN_GT, BIN_GE,
} bin_fn;

/* How an op reads its schema: which operands are Python scalars, and where
 * alpha / rounding_mode live (-1 = absent). */
typedef struct bin_desc {
    bin_fn fn;
    bool self_scalar, other_scalar;
    int alpha_arg, mode_arg;
} bin_desc;

/* One operand: a tensor broadcast to the output shape, or a scalar. */
typedef struct bin_operand {
    const pt_tensor *t;  /* NULL for a scalar */
    pt_tensor view;      /* t broadcast to the output shape */
    bool is_int;         /* scalar only: integral (int or bool) */
    int64_t i;           /* scalar only */
    double f;            /* scalar only */
} bin_operand;

static inline bool bin_decode(pt_op op, bin_desc *d) {
    *d = (bin_desc){.fn = BIN_ADD, .alpha_arg = -1, .mode_arg = -1};
    switch (op) {
    case PETREL_OP_ADD_TENSOR: case PETREL_OP_ADD__TENSOR: d->fn = BIN_ADD; d->alpha_arg = 2; break;
    case PETREL_OP_ADD_SCALAR: case PETREL_OP_ADD__SCALAR:
        d->fn = BIN_ADD; d->other_scalar = true; d->alpha_arg = 2; break;
    case PETREL_OP_SUB_TENSOR: case PETREL_OP_SUB__TENSOR: d->fn = BIN_SUB; d->alpha_arg = 2; break;
    case PETREL_OP_SUB_SCALAR: d->fn = BIN_SUB; d->other_scalar = true; d->alpha_arg = 2; break;
    case PETREL_OP_RSUB_TENSOR: d->fn = BIN_RSUB; d->alpha_arg = 2; break;
    case PETREL_OP_RSUB_SCALAR: d->fn = BIN_RSUB; d->other_scalar = true; d->alpha_arg = 2; break;
    case PETREL_OP_MUL_TENSOR: case PETREL_OP_MUL__TENSOR: d->fn = BIN_MUL; break;
    case PETREL_OP_MUL_SCALAR: case PETREL_OP_MUL__SCALAR: d->fn = BIN_MUL; d->other_scalar = true; break;
    case PETREL_OP_DIV_TENSOR: case PETREL_OP_DIV__TENSOR: d->fn = BIN_DIV; break;
    case PETREL_OP_DIV_SCALAR: case PETREL_OP_DIV__SCALAR: d->fn = BIN_DIV; d->other_scalar = true; break;
    case PETREL_OP_DIV_TENSOR_MODE: d->fn = BIN_DIV; d->mode_arg = 2; break;
    case PETREL_OP_DIV_SCALAR_MODE: d->fn = BIN_DIV; d->other_scalar = true; d->mode_arg = 2; break;
    case PETREL_OP_FLOOR_DIVIDE: d->fn = BIN_DIV_FLOOR; break;
    case PETREL_OP_FLOOR_DIVIDE_SCALAR: d->fn = BIN_DIV_FLOOR; d->other_scalar = true; break;
    case PETREL_OP_REMAINDER_TENSOR: d->fn = BIN_REMAINDER; break;
    case PETREL_OP_REMAINDER_SCALAR: d->fn = BIN_REMAINDER; d->other_scalar = true; break;
    case PETREL_OP_FMOD_TENSOR: d->fn = BIN_FMOD; break;
    case PETREL_OP_FMOD_SCALAR: d->fn = BIN_FMOD; d->other_scalar = true; break;
    case PETREL_OP_POW_TENSOR_TENSOR: d->fn = BIN_POW; break;
    case PETREL_OP_POW_TENSOR_SCALAR: d->fn = BIN_POW; d->other_scalar = true; break;
    case PETREL_OP_POW_SCALAR: d->fn = BIN_POW; d->self_scalar = true; break;
    case PETREL_OP_MAXIMUM: d->fn = BIN_MAXIMUM; break;
    case PETREL_OP_MINIMUM: d->fn = BIN_MINIMUM; break;
    case PETREL_OP_ATAN2: d->fn = BIN_ATAN2; break;
    case PETREL_OP_LOGICAL_AND: d->fn = BIN_LAND; break;
    case PETREL_OP_LOGICAL_OR: d->fn = BIN_LOR; break;
    case PETREL_OP_LOGICAL_XOR: d->fn = BIN_LXOR; break;
    case PETREL_OP_BITWISE_AND_TENSOR: d->fn = BIN_BAND; break;
    case PETREL_OP_BITWISE_AND_SCALAR: d->fn = BIN_BAND; d->other_scalar = true; break;
    case PETREL_OP_BITWISE_OR_TENSOR: d->fn = BIN_BOR; break;
    case PETREL_OP_BITWISE_OR_SCALAR: d->fn = BIN_BOR; d->other_scalar = true; break;
    case PETREL_OP_BITWISE_XOR_TENSOR: d->fn = BIN_BXOR; break;
    case PETREL_OP_BITWISE_XOR_SCALAR: d->fn = BIN_BXOR; d->other_scalar = true; break;
    case PETREL_OP_AND_TENSOR: d->fn = BIN_BAND; break; /* Python's & on tensors */
    case PETREL_OP_OR_TENSOR: d->fn = BIN_BOR; break;
    case PETREL_OP_XOR_TENSOR: d->fn = BIN_BXOR; break;
    case PETREL_OP_AND_SCALAR: d->fn = BIN_BAND; d->other_scalar = true; break;
    case PETREL_OP_OR_SCALAR: d->fn = BIN_BOR; d->other_scalar = true; break;
    case PETREL_OP_XOR_SCALAR: d->fn = BIN_BXOR; d->other_scalar = true; break;
    case PETREL_OP_EQ_TENSOR: d->fn = BIN_EQ; break;
    case PETREL_OP_EQ_SCALAR: d->fn = BIN_EQ; d->other_scalar = true; break;
    case PETREL_OP_NE_TENSOR: d->fn = BIN_NE; break;
    case PETREL_OP_NE_SCALAR: d->fn = BIN_NE; d->other_scalar = true; break;
    case PETREL_OP_LT_TENSOR: d->fn = BIN_LT; break;
    case PETREL_OP_LT_SCALAR: d->fn = BIN_LT; d->other_scalar = true; break;
    case PETREL_OP_LE_TENSOR: d->fn = BIN_LE; break;
    case PETREL_OP_LE_SCALAR: d->fn = BIN_LE; d->other_scalar = true; break;
    case PETREL_OP_GT_TENSOR: d->fn = BIN_GT; break;
    case PETREL_OP_GT_SCALAR: d->fn = BIN_GT; d->other_scalar = true; break;
    case PETREL_OP_GE_TENSOR: d->fn = BIN_GE; break;
    case PETREL_OP_GE_SCALAR: d->fn = BIN_GE; d->other_scalar = true; break;
    default: return false;
    }
    return true;
}

static inline bool bin_is_compare(bin_fn f) { return f >= BIN_EQ && f <= BIN_GE; }
static inline bool bin_is_logical(bin_fn f) { return f == BIN_LAND || f == BIN_LOR || f == BIN_LXOR; }
static inline bool bin_is_bitwise(bin_fn f) { return f == BIN_BAND || f == BIN_BOR || f == BIN_BXOR; }

/* A Python number where the schema says Tensor (export writes x + 2 as
 * add.Tensor(x, 2)) is read as a scalar, so it promotes like torch's
 * wrapped numbers rather than like a 0-d tensor. */
static inline bool bin_arg_is_number(const pt_node *n, int a) {
    if (a >= n->nargs) return false;
    pt_arg_kind k = n->args[a].kind;
    return (k == PT_ARG_INT || k == PT_ARG_FLOAT || k == PT_ARG_BOOL) && n->args[a].n == 1;
}

static inline petrel_status bin_read_operand(pt_exec *ex, const pt_node *n, int a, bool scalar,
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
 * ("opmath"), so half * 0.1 uses 0.1f while half + 0.1 uses half(0.1).
 * The common dtype, not the output's, matters for in-place ops
 * (half_tensor.add_(float_tensor) adds in float) and comparisons. */
static inline petrel_dtype bin_round_dtype(bin_fn fn, const bin_operand *x, const bin_operand *y,
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
    if (fn == BIN_MUL || fn == BIN_DIV || fn == BIN_DIV_TRUNC || fn == BIN_DIV_FLOOR)
        return ew_opmath(base);
    return base;
}

/* The common start of a binary kernel: decode the op (rounding_mode
 * picks the division), read both operands and broadcast the tensor ones
 * to the output shape (rank, shape); a scalar operand has no view. */
static inline petrel_status bin_prepare(pt_exec *ex, const pt_node *n, bin_desc *d, bin_operand *x, bin_operand *y,
                                        int *rank, int64_t *shape) {
    if (!bin_decode(n->op, d)) return pk_fail(ex, PETREL_ERR_RUNTIME, "not a binary op");
    if (d->mode_arg >= 0) {
        const char *mode = pk_str(ex, n, d->mode_arg);
        if (!mode) d->fn = BIN_DIV;
        else if (strcmp(mode, "trunc") == 0) d->fn = BIN_DIV_TRUNC;
        else if (strcmp(mode, "floor") == 0) d->fn = BIN_DIV_FLOOR;
        else return pk_fail(ex, PETREL_ERR_RUNTIME, "div: unknown rounding_mode '%s'", mode);
    }

    PT_TRY(bin_read_operand(ex, n, 0, d->self_scalar, x));
    PT_TRY(bin_read_operand(ex, n, 1, d->other_scalar, y));

    /* output shape: broadcast of the tensor operands (a scalar is rank 0) */
    const pt_tensor *ta = x->t, *tb = y->t;
    if (!ta && !tb) {
        *rank = 0; /* two numbers: a 0-d result */
    } else if (ta && tb) {
        if (!pt_broadcast_shape(ta->rank, ta->shape, tb->rank, tb->shape, rank, shape))
            return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
    } else {
        const pt_tensor *t = ta ? ta : tb;
        *rank = t->rank;
        memcpy(shape, t->shape, sizeof(int64_t) * (size_t)*rank);
    }
    if (ta && !pt_broadcast_to(ta, *rank, shape, &x->view))
        return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
    if (tb && !pt_broadcast_to(tb, *rank, shape, &y->view))
        return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
    return PETREL_OK;
}

#endif /* PETREL_CPU_BINARY_OPS_H */
