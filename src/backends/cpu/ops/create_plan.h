/*
** create_plan.h -- the argument side of the tensor factories (arange,
** full, zeros, ones, empty*, the *_like and new_* variants and
** scalar_tensor), shared by the CPU reference (create.c) and the CUDA
** backend (cuda/ops/create.c): what the op makes, computed and checked
** once with the same messages on every backend.  Each backend then
** allocates output 0 (pk_out_alloc of rank/shape) and writes it.
*/
#ifndef PETREL_CPU_CREATE_PLAN_H
#define PETREL_CPU_CREATE_PLAN_H

#include <math.h>

#include "ew_util.h"

typedef struct create_plan {
    int rank;
    int64_t shape[PETREL_MAX_RANK];
    bool arange;      /* else every element is the fill value */
    double fv;        /* fill value as double (float outputs) ... */
    int64_t iv;       /* ... and as int64 (integer outputs) */
    /* arange: element i = fs + fst * i (float outputs, in double) or is +
     * ist * i (integer outputs, wrapping like torch's int64 arithmetic) */
    bool fl;
    double fs, fst;
    int64_t is, ist;
} create_plan;

/* Read a SymInt[] size argument; fails on a negative size or too many
 * dims. */
static inline petrel_status cr_size(pt_exec *ex, const pt_node *n, int a, create_plan *p) {
    int64_t tmp[PETREL_MAX_RANK * 2];
    int c = pk_ints(ex, n, a, tmp, PETREL_MAX_RANK * 2);
    if (c > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_RUNTIME, "too many dims (%d)", c);
    for (int i = 0; i < c; i++) {
        if (tmp[i] < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "negative dimension %lld", (long long)tmp[i]);
        p->shape[i] = tmp[i];
    }
    p->rank = c;
    return PETREL_OK;
}

/* The fill value: Scalar argument `a`, or `konst` when a < 0. */
static inline petrel_status cr_value(pt_exec *ex, const pt_node *n, int a, int64_t konst, create_plan *p) {
    p->fv = a >= 0 ? pk_float(ex, n, a) : (double)konst;
    p->iv = a >= 0 ? ew_scalar_i64(ex, n, a) : konst;
    return PETREL_OK;
}

/* arange(start, end, step): length and values computed like torch's CPU
 * kernel.  int64 outputs use exact integer arithmetic (a double would
 * round large bounds); other dtypes take the length from doubles and the
 * values as start + i * step in the accumulate type (double for floats,
 * int64 for smaller integers). */
static inline petrel_status cr_arange(pt_exec *ex, const pt_node *n, int a_start, int a_end, int a_step,
                                      create_plan *p) {
    petrel_dtype odt = pk_out_dtype(ex, n, 0);
    double fs = a_start >= 0 ? pk_float(ex, n, a_start) : 0;
    double fe = pk_float(ex, n, a_end);
    double fst = a_step >= 0 ? pk_float(ex, n, a_step) : 1;
    int64_t is = a_start >= 0 ? ew_scalar_i64(ex, n, a_start) : 0;
    int64_t ie = ew_scalar_i64(ex, n, a_end);
    int64_t ist = a_step >= 0 ? ew_scalar_i64(ex, n, a_step) : 1;
    int64_t len;
    if (odt == PETREL_DTYPE_I64) {
        if (ist == 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: step must be nonzero");
        if (!((ist > 0 && ie >= is) || (ist < 0 && ie <= is)))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: upper bound and larger bound inconsistent with step sign");
        int64_t sgn = ist > 0 ? 1 : -1;
        len = (ie - is + ist - sgn) / ist;
    } else {
        if (fst == 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: step must be nonzero");
        if (!isfinite(fs) || !isfinite(fe))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: unsupported range %g -> %g", fs, fe);
        if (!((fst > 0 && fe >= fs) || (fst < 0 && fe <= fs)))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: upper bound and larger bound inconsistent with step sign");
        double size_d = ceil((fe - fs) / fst);
        if (!(size_d >= 0 && size_d < 9.2e18))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: invalid size %g", size_d);
        len = (int64_t)size_d;
    }
    p->arange = true, p->rank = 1, p->shape[0] = len;
    p->fl = ew_is_float(odt), p->fs = fs, p->fst = fst, p->is = is, p->ist = ist;
    return PETREL_OK;
}

/* What factory node n makes; fails on a zero step, an inconsistent
 * arange range and negative sizes. */
static inline petrel_status create_plan_of(pt_exec *ex, const pt_node *n, create_plan *p) {
    *p = (create_plan){0};
    switch (n->op) {
    case PETREL_OP_ARANGE: return cr_arange(ex, n, -1, 0, -1, p);
    case PETREL_OP_ARANGE_START: return cr_arange(ex, n, 0, 1, -1, p);
    case PETREL_OP_ARANGE_START_STEP: return cr_arange(ex, n, 0, 1, 2, p);
    case PETREL_OP_FULL:
        PT_TRY(cr_size(ex, n, 0, p));
        return cr_value(ex, n, 1, 0, p);
    case PETREL_OP_ZEROS:
    case PETREL_OP_EMPTY:
    case PETREL_OP_EMPTY_STRIDED:
    case PETREL_OP_EMPTY_PERMUTED:
        PT_TRY(cr_size(ex, n, 0, p));
        return cr_value(ex, n, -1, 0, p);
    case PETREL_OP_ONES:
        PT_TRY(cr_size(ex, n, 0, p));
        return cr_value(ex, n, -1, 1, p);
    case PETREL_OP_FULL_LIKE:
    case PETREL_OP_ZEROS_LIKE:
    case PETREL_OP_ONES_LIKE:
    case PETREL_OP_EMPTY_LIKE: {
        const pt_tensor *self = pk_tensor(ex, n, 0);
        if (!self) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
        p->rank = self->rank;
        memcpy(p->shape, self->shape, sizeof(int64_t) * (size_t)self->rank);
        if (n->op == PETREL_OP_FULL_LIKE) return cr_value(ex, n, 1, 0, p);
        return cr_value(ex, n, -1, n->op == PETREL_OP_ONES_LIKE ? 1 : 0, p);
    }
    case PETREL_OP_NEW_ZEROS:
    case PETREL_OP_NEW_EMPTY:
        PT_TRY(cr_size(ex, n, 1, p));
        return cr_value(ex, n, -1, 0, p);
    case PETREL_OP_NEW_ONES:
        PT_TRY(cr_size(ex, n, 1, p));
        return cr_value(ex, n, -1, 1, p);
    case PETREL_OP_NEW_FULL:
        PT_TRY(cr_size(ex, n, 1, p));
        return cr_value(ex, n, 2, 0, p);
    case PETREL_OP_SCALAR_TENSOR: return cr_value(ex, n, 0, 0, p);
    default: return pk_fail(ex, PETREL_ERR_RUNTIME, "not a factory op");
    }
}

#endif /* PETREL_CPU_CREATE_PLAN_H */
