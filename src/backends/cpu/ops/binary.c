/*
** binary.c -- CPU reference kernels for elementwise binary ops: arithmetic
** (add/sub/rsub with alpha, mul, div with its rounding modes, floor_divide,
** remainder, fmod, pow), maximum/minimum, atan2, logical and bitwise ops,
** and comparisons.  Part of the CPU backend.
**
** Operands broadcast against each other.  The output dtype is the one
** torch recorded; float outputs are computed in double and integer/bool
** outputs in int64, then stored once.  Before computing, operands are
** rounded to the precision torch computes in (see bin_round_dtype), which
** is what makes `half_tensor == 0.1` true and `half_tensor + 0.1` exact.
*/
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

static bool bin_decode(pt_op op, bin_desc *d) {
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

static bool bin_is_compare(bin_fn f) { return f >= BIN_EQ && f <= BIN_GE; }
static bool bin_is_logical(bin_fn f) { return f == BIN_LAND || f == BIN_LOR || f == BIN_LXOR; }
static bool bin_is_bitwise(bin_fn f) { return f == BIN_BAND || f == BIN_BOR || f == BIN_BXOR; }

/* ---- float arithmetic (double) ------------------------------------------- */

/* Python-style floor division, as c10's div_floor_floating: computed from
 * fmod so that e.g. 7.5 // 2.5 is exactly 3 even where a / b rounds. */
static double bin_floordiv_f64(double a, double b) {
    if (b == 0) return a / b;
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0 && (b < 0) != (mod < 0)) div -= 1;
    if (div == 0) return copysign(0.0, a / b);
    double fl = floor(div);
    if (div - fl > 0.5) fl += 1;
    return fl;
}

/* a op b in double; `rnd` is the dtype intermediate quotients are rounded
 * to (torch truncates the float32 quotient, not the exact one). */
static double bin_f64(bin_fn fn, double a, double b, double alpha, petrel_dtype rnd) {
    switch (fn) {
    case BIN_ADD: return a + alpha * b;
    case BIN_SUB: return a - alpha * b;
    case BIN_RSUB: return b - alpha * a;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    case BIN_DIV_TRUNC: return trunc(ew_round(a / b, rnd));
    case BIN_DIV_FLOOR: return bin_floordiv_f64(a, b);
    case BIN_REMAINDER: {
        /* the result takes the divisor's sign, like Python's % */
        double m = fmod(a, b);
        if (m != 0 && (b < 0) != (m < 0)) m += b;
        return m;
    }
    case BIN_FMOD: return fmod(a, b);
    case BIN_POW: return pow(a, b);
    case BIN_MAXIMUM: return (isnan(a) || isnan(b)) ? NAN : (a > b ? a : b);
    case BIN_MINIMUM: return (isnan(a) || isnan(b)) ? NAN : (a < b ? a : b);
    case BIN_ATAN2: return atan2(a, b);
    case BIN_LAND: return (a != 0) && (b != 0);
    case BIN_LOR: return (a != 0) || (b != 0);
    case BIN_LXOR: return (a != 0) != (b != 0);
    case BIN_EQ: return a == b;
    case BIN_NE: return a != b;
    case BIN_LT: return a < b;
    case BIN_LE: return a <= b;
    case BIN_GT: return a > b;
    case BIN_GE: return a >= b;
    case BIN_BAND: case BIN_BOR: case BIN_BXOR: break; /* rejected before the loop */
    }
    return NAN;
}

/* ---- integer arithmetic (int64, wrapping like the fixed-width C types) --- */

static int64_t bin_wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t bin_wrap_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

/* Integer power by squaring; a negative exponent gives 0 except for bases
 * 1 and -1, as torch's powi. */
static int64_t bin_powi(int64_t a, int64_t b) {
    if (b < 0) {
        if (a == 1) return 1;
        if (a == -1) return (b % 2 == 0) ? 1 : -1;
        return 0;
    }
    int64_t r = 1;
    while (b) {
        if (b & 1) r = bin_wrap_mul(r, a);
        a = bin_wrap_mul(a, a);
        b >>= 1;
    }
    return r;
}

/* a op b in int64.  Returns false on integer division by zero (torch
 * raises ZeroDivisionError). */
static bool bin_i64(bin_fn fn, int64_t a, int64_t b, int64_t alpha, int64_t *r) {
    switch (fn) {
    case BIN_ADD: *r = bin_wrap_add(a, bin_wrap_mul(alpha, b)); return true;
    case BIN_SUB: *r = (int64_t)((uint64_t)a - (uint64_t)bin_wrap_mul(alpha, b)); return true;
    case BIN_RSUB: *r = (int64_t)((uint64_t)b - (uint64_t)bin_wrap_mul(alpha, a)); return true;
    case BIN_MUL: *r = bin_wrap_mul(a, b); return true;
    case BIN_DIV:
    case BIN_DIV_TRUNC:
    case BIN_DIV_FLOOR:
    case BIN_REMAINDER:
    case BIN_FMOD: {
        if (b == 0) return false;
        /* INT64_MIN / -1 overflows in C; the wrapped answer is -a, remainder 0 */
        int64_t q = b == -1 ? (int64_t)((uint64_t)0 - (uint64_t)a) : a / b;
        int64_t m = b == -1 ? 0 : a % b;
        if (fn == BIN_DIV || fn == BIN_DIV_TRUNC) *r = q;
        else if (fn == BIN_FMOD) *r = m;
        else if (fn == BIN_DIV_FLOOR) *r = (m != 0 && (m < 0) != (b < 0)) ? q - 1 : q;
        else *r = (m != 0 && (m < 0) != (b < 0)) ? m + b : m;
        return true;
    }
    case BIN_POW: *r = bin_powi(a, b); return true;
    case BIN_MAXIMUM: *r = a > b ? a : b; return true;
    case BIN_MINIMUM: *r = a < b ? a : b; return true;
    case BIN_ATAN2: *r = (int64_t)atan2((double)a, (double)b); return true;
    case BIN_LAND: *r = (a != 0) && (b != 0); return true;
    case BIN_LOR: *r = (a != 0) || (b != 0); return true;
    case BIN_LXOR: *r = (a != 0) != (b != 0); return true;
    case BIN_BAND: *r = a & b; return true;
    case BIN_BOR: *r = a | b; return true;
    case BIN_BXOR: *r = a ^ b; return true;
    case BIN_EQ: *r = a == b; return true;
    case BIN_NE: *r = a != b; return true;
    case BIN_LT: *r = a < b; return true;
    case BIN_LE: *r = a <= b; return true;
    case BIN_GT: *r = a > b; return true;
    case BIN_GE: *r = a >= b; return true;
    }
    return true;
}

/* ---- operands ------------------------------------------------------------ */

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

static double bin_load_f64(const bin_operand *o, const int64_t *idx, petrel_dtype rnd) {
    double v = o->t ? pt_load_f64(pt_at(&o->view, idx), o->t->dtype) : (o->is_int ? (double)o->i : o->f);
    return ew_round(v, rnd);
}

static int64_t bin_load_i64(const bin_operand *o, const int64_t *idx) {
    return o->t ? pt_load_i64(pt_at(&o->view, idx), o->t->dtype) : o->i;
}

/* The dtype operands are rounded to before a float computation: torch
 * casts both operands to their common dtype (torch.result_type), except
 * that mul and div of half/bfloat16 read a scalar operand in float
 * ("opmath"), so half * 0.1 uses 0.1f while half + 0.1 uses half(0.1).
 * The common dtype, not the output's, matters for in-place ops
 * (half_tensor.add_(float_tensor) adds in float) and comparisons. */
static petrel_dtype bin_round_dtype(bin_fn fn, const bin_operand *x, const bin_operand *y,
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

/* ---- kernel -------------------------------------------------------------- */

/*
** cpu_k_binary -- every op of the "binary" family in ops.def.  Reads two
** operands (tensor or Scalar by schema), broadcasts them, and writes one
** fresh output of the exported dtype.  Fails on incompatible shapes,
** integer division by zero, bitwise ops on floats and unknown rounding
** modes.
*/
petrel_status cpu_k_binary(pt_exec *ex, const pt_node *n) {
    bin_desc d;
    if (!bin_decode(n->op, &d)) return pk_fail(ex, PETREL_ERR_RUNTIME, "not a binary op");
    if (d.mode_arg >= 0) {
        const char *mode = pk_str(ex, n, d.mode_arg);
        if (!mode) d.fn = BIN_DIV;
        else if (strcmp(mode, "trunc") == 0) d.fn = BIN_DIV_TRUNC;
        else if (strcmp(mode, "floor") == 0) d.fn = BIN_DIV_FLOOR;
        else return pk_fail(ex, PETREL_ERR_RUNTIME, "div: unknown rounding_mode '%s'", mode);
    }

    bin_operand x, y;
    PT_TRY(bin_read_operand(ex, n, 0, d.self_scalar, &x));
    PT_TRY(bin_read_operand(ex, n, 1, d.other_scalar, &y));

    /* output shape: broadcast of the tensor operands (a scalar is rank 0) */
    int rank = 0;
    int64_t shape[PETREL_MAX_RANK];
    const pt_tensor *ta = x.t, *tb = y.t;
    if (!ta && !tb) {
        rank = 0; /* two numbers: a 0-d result */
    } else if (ta && tb) {
        if (!pt_broadcast_shape(ta->rank, ta->shape, tb->rank, tb->shape, &rank, shape))
            return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
    } else {
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
    bool in_float;
    if (bin_is_compare(d.fn) || bin_is_logical(d.fn)) in_float = ew_is_float(rnd);
    else in_float = ew_is_float(odt);
    if (bin_is_bitwise(d.fn) && in_float)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "bitwise ops need integer or bool tensors");
    if (!in_float && d.fn == BIN_DIV)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "true division needs a float output");
    if (!in_float && d.fn == BIN_POW && !y.t && y.i < 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME,
                       "integers to negative integer powers are not allowed");

    /* alpha is only meaningful for add/sub/rsub; torch reads it in the
     * compute type of the op */
    double alpha_f = 1;
    int64_t alpha_i = 1;
    if (d.alpha_arg >= 0 && d.alpha_arg < n->nargs && !pk_is_none(ex, n, d.alpha_arg)) {
        alpha_f = pk_float(ex, n, d.alpha_arg);
        alpha_i = ew_scalar_i64(ex, n, d.alpha_arg);
    }

    int64_t total = pt_numel(out);
    int64_t idx[PETREL_MAX_RANK] = {0};
    for (int64_t i = 0; i < total; i++, pt_next_index(idx, shape, rank)) {
        uint8_t *dst = ew_elem(out, i);
        if (in_float) {
            double a = bin_load_f64(&x, idx, rnd), b = bin_load_f64(&y, idx, rnd);
            pt_store_f64(dst, odt, bin_f64(d.fn, a, b, alpha_f, rnd));
        } else {
            int64_t r;
            if (!bin_i64(d.fn, bin_load_i64(&x, idx), bin_load_i64(&y, idx), alpha_i, &r))
                return pk_fail(ex, PETREL_ERR_RUNTIME, "integer division by zero");
            pt_store_i64(dst, odt, r);
        }
    }
    return PETREL_OK;
}
