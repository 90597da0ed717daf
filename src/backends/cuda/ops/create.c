/*
** create.c -- CUDA kernels for tensor factories, host side: arange, full,
** zeros, ones, empty, empty_strided, empty_permuted, the *_like and new_*
** variants and scalar_tensor.  arange's kernel is in create_k.cu, fills
** in copy_k.cu.  Part of the CUDA backend.
**
** Mirrors the CPU reference (cpu/ops/create.c): the output dtype is the
** exported one; empty* outputs are zero-filled so runs are deterministic,
** and empty_strided / empty_permuted outputs are plain contiguous tensors.
*/
#include "create_k.h"
#include "ew.h"

/* Fill output 0 of the given shape with a value: Scalar argument `a`, or
 * `konst` when a < 0. */
static petrel_status cr_full(pt_exec *ex, const pt_node *n, int rank, const int64_t *shape, int a,
                             int64_t konst) {
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    return pcu_ew_fill(ex, out, a >= 0 ? pk_float(ex, n, a) : (double)konst,
                       a >= 0 ? ew_scalar_i64(ex, n, a) : konst);
}

/* Read a SymInt[] size argument; fails on a negative size or too many
 * dims. */
static petrel_status cr_size(pt_exec *ex, const pt_node *n, int a, int *rank, int64_t *shape) {
    int64_t tmp[PETREL_MAX_RANK * 2];
    int c = pk_ints(ex, n, a, tmp, PETREL_MAX_RANK * 2);
    if (c > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_RUNTIME, "too many dims (%d)", c);
    for (int i = 0; i < c; i++) {
        if (tmp[i] < 0)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "negative dimension %lld", (long long)tmp[i]);
        shape[i] = tmp[i];
    }
    *rank = c;
    return PETREL_OK;
}

/* arange(start, end, step): the length is computed on the host as torch's
 * CPU kernel does (exact integers for int64 outputs, doubles otherwise),
 * the values on the device. */
static petrel_status cr_arange(pt_exec *ex, const pt_node *n, int a_start, int a_end, int a_step) {
    petrel_dtype odt = pk_out_dtype(ex, n, 0);
    bool fl = ew_is_float(odt);
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
            return pk_fail(ex, PETREL_ERR_RUNTIME,
                           "arange: upper bound and larger bound inconsistent with step sign");
        int64_t sgn = ist > 0 ? 1 : -1;
        len = (ie - is + ist - sgn) / ist;
    } else {
        if (fst == 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: step must be nonzero");
        if (!isfinite(fs) || !isfinite(fe))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: unsupported range %g -> %g", fs, fe);
        if (!((fst > 0 && fe >= fs) || (fst < 0 && fe <= fs)))
            return pk_fail(ex, PETREL_ERR_RUNTIME,
                           "arange: upper bound and larger bound inconsistent with step sign");
        double size_d = ceil((fe - fs) / fst);
        if (!(size_d >= 0 && size_d < 9.2e18))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "arange: invalid size %g", size_d);
        len = (int64_t)size_d;
    }
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 1, &len, &out));
    PCU_LAUNCHED(ex, pcu_launch_arange(out->data, (int)odt, len, fl, fs, fst, is, ist, pcu_stream(ex)),
                 "arange kernel");
    return PETREL_OK;
}

/*
** cuda_k_create -- every op of the "create" family in ops.def, as
** cpu_k_create computes it.  Writes one fresh output; fails on a zero step
** or an inconsistent arange range and on negative sizes.
*/
petrel_status cuda_k_create(pt_exec *ex, const pt_node *n) {
    int rank = 0;
    int64_t shape[PETREL_MAX_RANK] = {0};
    switch (n->op) {
    case PETREL_OP_ARANGE: return cr_arange(ex, n, -1, 0, -1);
    case PETREL_OP_ARANGE_START: return cr_arange(ex, n, 0, 1, -1);
    case PETREL_OP_ARANGE_START_STEP: return cr_arange(ex, n, 0, 1, 2);
    case PETREL_OP_FULL:
        PT_TRY(cr_size(ex, n, 0, &rank, shape));
        return cr_full(ex, n, rank, shape, 1, 0);
    case PETREL_OP_ZEROS:
    case PETREL_OP_EMPTY:
    case PETREL_OP_EMPTY_STRIDED:
    case PETREL_OP_EMPTY_PERMUTED:
        PT_TRY(cr_size(ex, n, 0, &rank, shape));
        return cr_full(ex, n, rank, shape, -1, 0);
    case PETREL_OP_ONES:
        PT_TRY(cr_size(ex, n, 0, &rank, shape));
        return cr_full(ex, n, rank, shape, -1, 1);
    case PETREL_OP_FULL_LIKE:
    case PETREL_OP_ZEROS_LIKE:
    case PETREL_OP_ONES_LIKE:
    case PETREL_OP_EMPTY_LIKE: {
        const pt_tensor *self = pk_tensor(ex, n, 0);
        if (!self) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
        if (n->op == PETREL_OP_FULL_LIKE) return cr_full(ex, n, self->rank, self->shape, 1, 0);
        return cr_full(ex, n, self->rank, self->shape, -1, n->op == PETREL_OP_ONES_LIKE ? 1 : 0);
    }
    case PETREL_OP_NEW_ZEROS:
    case PETREL_OP_NEW_EMPTY:
        PT_TRY(cr_size(ex, n, 1, &rank, shape));
        return cr_full(ex, n, rank, shape, -1, 0);
    case PETREL_OP_NEW_ONES:
        PT_TRY(cr_size(ex, n, 1, &rank, shape));
        return cr_full(ex, n, rank, shape, -1, 1);
    case PETREL_OP_NEW_FULL:
        PT_TRY(cr_size(ex, n, 1, &rank, shape));
        return cr_full(ex, n, rank, shape, 2, 0);
    case PETREL_OP_SCALAR_TENSOR:
        return cr_full(ex, n, 0, shape, 0, 0);
    default:
        return pk_fail(ex, PETREL_ERR_RUNTIME, "not a factory op");
    }
}
