/*
** symbolic.c -- CPU kernels for symbolic scalars: sizes, strides and numel
** of runtime tensors, item() / _local_scalar_dense, and the Python scalar
** operators an exported graph computes sizes with (_operator.*, math.trunc,
** torch.sym_*).  Part of the CPU backend.
**
** Scalars follow Python: int op int stays int (floordiv floors, mod takes
** the divisor's sign), anything with a float is float, truediv is always
** float, comparisons give bool.  Bool operands are told apart from ints,
** so `and_`/`or_` of SymBools stay bools.
*/
#include "ew_util.h"

/* One Python scalar operand. */
typedef struct sy_val {
    bool is_int;   /* int or bool */
    bool is_bool;
    int64_t i;
    double f;      /* the value as a float (also set for ints) */
} sy_val;

static sy_val sy_read(pt_exec *ex, const pt_node *n, int a) {
    sy_val v;
    v.is_int = pk_scalar_is_int(ex, n, a);
    /* the wrapped 0-d tensor of a number argument carries its kind (bool,
     * int64 or double) even when the number is a symbolic value */
    const pt_tensor *t = pk_tensor(ex, n, a);
    v.is_bool = t && t->dtype == PETREL_DTYPE_BOOL;
    v.f = pk_float(ex, n, a);
    v.i = v.is_int ? pk_int(ex, n, a) : 0;
    if (v.is_int) v.f = (double)v.i;
    return v;
}

static void sy_out(pt_exec *ex, const pt_node *n, sy_val v) {
    if (v.is_bool) pk_out_bool(ex, n, 0, v.i != 0);
    else if (v.is_int) pk_out_int(ex, n, 0, v.i);
    else pk_out_float(ex, n, 0, v.f);
}

static sy_val sy_int(int64_t i) { return (sy_val){.is_int = true, .i = i, .f = (double)i}; }
static sy_val sy_float(double f) { return (sy_val){.f = f}; }
static sy_val sy_bool(bool b) { return (sy_val){.is_int = true, .is_bool = true, .i = b, .f = b}; }

/* Python's a // b and a % b on ints.  Returns false on division by zero. */
static bool sy_divmod_i64(int64_t a, int64_t b, int64_t *q, int64_t *m) {
    if (b == 0) return false;
    if (b == -1) { /* avoids INT64_MIN / -1 */
        *q = (int64_t)((uint64_t)0 - (uint64_t)a);
        *m = 0;
        return true;
    }
    *q = a / b;
    *m = a % b;
    if (*m != 0 && (*m < 0) != (b < 0)) {
        *q -= 1;
        *m += b;
    }
    return true;
}

/* Python's a // b and a % b on floats, step by step as CPython's
 * float_divmod so the rounding matches.  Returns false on b == 0. */
static bool sy_divmod_f64(double a, double b, double *q, double *m) {
    if (b == 0) return false;
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0) {
        if ((b < 0) != (mod < 0)) {
            mod += b;
            div -= 1.0;
        }
    } else {
        mod = copysign(0.0, b);
    }
    double fl;
    if (div != 0) {
        fl = floor(div);
        if (div - fl > 0.5) fl += 1.0;
    } else {
        fl = copysign(0.0, a / b);
    }
    *q = fl;
    *m = mod;
    return true;
}

/* Python's a ** b on ints with b >= 0 (wrapping on overflow). */
static int64_t sy_powi(int64_t a, int64_t b) {
    uint64_t r = 1, base = (uint64_t)a;
    while (b > 0) {
        if (b & 1) r *= base;
        base *= base;
        b >>= 1;
    }
    return (int64_t)r;
}

/* Binary Python operators.  Returns false (after failing the node) on a
 * division by zero or an op that is not one of them. */
static bool sy_binary(pt_exec *ex, pt_op op, sy_val a, sy_val b, sy_val *r) {
    bool ints = a.is_int && b.is_int;
    switch (op) {
    case PETREL_OP_OPERATOR_ADD:
        *r = ints ? sy_int((int64_t)((uint64_t)a.i + (uint64_t)b.i)) : sy_float(a.f + b.f);
        return true;
    case PETREL_OP_OPERATOR_SUB:
        *r = ints ? sy_int((int64_t)((uint64_t)a.i - (uint64_t)b.i)) : sy_float(a.f - b.f);
        return true;
    case PETREL_OP_OPERATOR_MUL:
        *r = ints ? sy_int((int64_t)((uint64_t)a.i * (uint64_t)b.i)) : sy_float(a.f * b.f);
        return true;
    case PETREL_OP_OPERATOR_TRUEDIV:
        if (b.f == 0) break;
        *r = sy_float(a.f / b.f);
        return true;
    case PETREL_OP_OPERATOR_FLOORDIV:
    case PETREL_OP_OPERATOR_MOD:
        if (ints) {
            int64_t q, m;
            if (!sy_divmod_i64(a.i, b.i, &q, &m)) break;
            *r = sy_int(op == PETREL_OP_OPERATOR_FLOORDIV ? q : m);
        } else {
            double q, m;
            if (!sy_divmod_f64(a.f, b.f, &q, &m)) break;
            *r = sy_float(op == PETREL_OP_OPERATOR_FLOORDIV ? q : m);
        }
        return true;
    case PETREL_OP_OPERATOR_POW:
        if (ints && b.i >= 0) *r = sy_int(sy_powi(a.i, b.i));
        else *r = sy_float(pow(a.f, b.f));
        return true;
    case PETREL_OP_OPERATOR_EQ: *r = sy_bool(ints ? a.i == b.i : a.f == b.f); return true;
    case PETREL_OP_OPERATOR_NE: *r = sy_bool(ints ? a.i != b.i : a.f != b.f); return true;
    case PETREL_OP_OPERATOR_LT: *r = sy_bool(ints ? a.i < b.i : a.f < b.f); return true;
    case PETREL_OP_OPERATOR_LE: *r = sy_bool(ints ? a.i <= b.i : a.f <= b.f); return true;
    case PETREL_OP_OPERATOR_GT: *r = sy_bool(ints ? a.i > b.i : a.f > b.f); return true;
    case PETREL_OP_OPERATOR_GE: *r = sy_bool(ints ? a.i >= b.i : a.f >= b.f); return true;
    case PETREL_OP_OPERATOR_AND:
    case PETREL_OP_OPERATOR_OR: {
        int64_t v = op == PETREL_OP_OPERATOR_AND ? (a.i & b.i) : (a.i | b.i);
        *r = a.is_bool && b.is_bool ? sy_bool(v != 0) : sy_int(v);
        return true;
    }
    case PETREL_OP_SYM_MAX:
    case PETREL_OP_SYM_MIN: {
        bool take_a = op == PETREL_OP_SYM_MAX ? (ints ? a.i >= b.i : a.f >= b.f)
                                              : (ints ? a.i <= b.i : a.f <= b.f);
        sy_val c = take_a ? a : b;
        *r = ints ? sy_int(c.i) : sy_float(c.f);
        return true;
    }
    default:
        pk_fail(ex, PETREL_ERR_RUNTIME, "not a symbolic op");
        return false;
    }
    pk_fail(ex, PETREL_ERR_RUNTIME, "division by zero");
    return false;
}

/*
** cpu_k_symbolic -- every op of the "symbolic" family in ops.def.  Produces
** one int, float or bool scalar output.  Fails on a dim out of range, on
** item() of a tensor that does not hold exactly one element, and on
** division or modulo by zero.
*/
petrel_status cpu_k_symbolic(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_SYM_SIZE:
    case PETREL_OP_SYM_STRIDE: {
        const pt_tensor *t = pk_tensor(ex, n, 0);
        if (!t) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
        int64_t d = pk_int(ex, n, 1);
        int w = pt_wrap_dim(d, t->rank);
        if (w < 0 || t->rank == 0)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "dim %lld out of range", (long long)d);
        /* the stride is the runtime tensor's own, in elements */
        pk_out_int(ex, n, 0, n->op == PETREL_OP_SYM_SIZE ? t->shape[w] : t->stride[w]);
        return PETREL_OK;
    }
    case PETREL_OP_SYM_NUMEL: {
        const pt_tensor *t = pk_tensor(ex, n, 0);
        if (!t) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
        pk_out_int(ex, n, 0, pt_numel(t));
        return PETREL_OK;
    }
    case PETREL_OP_LOCAL_SCALAR_DENSE:
    case PETREL_OP_ITEM: {
        const pt_tensor *t = pk_tensor(ex, n, 0);
        if (!t) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
        if (pt_numel(t) != 1)
            return pk_fail(ex, PETREL_ERR_RUNTIME,
                           "a tensor with %lld elements cannot be converted to a scalar",
                           (long long)pt_numel(t));
        if (ew_is_float(t->dtype)) pk_out_float(ex, n, 0, pt_load_f64(t->data, t->dtype));
        else if (t->dtype == PETREL_DTYPE_BOOL) pk_out_bool(ex, n, 0, pt_load_i64(t->data, t->dtype) != 0);
        else pk_out_int(ex, n, 0, pt_load_i64(t->data, t->dtype));
        return PETREL_OK;
    }
    case PETREL_OP_OPERATOR_NEG: {
        sy_val a = sy_read(ex, n, 0);
        sy_out(ex, n, a.is_int ? sy_int((int64_t)((uint64_t)0 - (uint64_t)a.i)) : sy_float(-a.f));
        return PETREL_OK;
    }
    case PETREL_OP_MATH_TRUNC:
    case PETREL_OP_SYM_INT: {
        sy_val a = sy_read(ex, n, 0);
        if (a.is_int) {
            pk_out_int(ex, n, 0, a.i);
            return PETREL_OK;
        }
        if (!isfinite(a.f))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "cannot convert %g to an integer", a.f);
        pk_out_int(ex, n, 0, (int64_t)trunc(a.f));
        return PETREL_OK;
    }
    case PETREL_OP_SYM_FLOAT:
        pk_out_float(ex, n, 0, sy_read(ex, n, 0).f);
        return PETREL_OK;
    case PETREL_OP_SYM_NOT:
        pk_out_bool(ex, n, 0, sy_read(ex, n, 0).f == 0);
        return PETREL_OK;
    case PETREL_OP_SYM_SQRT:
        pk_out_float(ex, n, 0, sqrt(sy_read(ex, n, 0).f));
        return PETREL_OK;
    case PETREL_OP_SYM_ITE: {
        sy_val c = sy_read(ex, n, 0);
        sy_out(ex, n, sy_read(ex, n, c.f != 0 ? 1 : 2));
        return PETREL_OK;
    }
    default: {
        sy_val r;
        if (!sy_binary(ex, n->op, sy_read(ex, n, 0), sy_read(ex, n, 1), &r)) return PETREL_ERR_RUNTIME;
        sy_out(ex, n, r);
        return PETREL_OK;
    }
    }
}
