/*
** copy.c -- CPU reference kernels for copies and fills: clone, _to_copy,
** the to.* conversions, type_as, lift_fresh_copy, copy / copy_, fill /
** fill_ and zero_.  Part of the CPU backend.
**
** Every op writes a fresh contiguous output of the exported dtype; dtype
** conversion follows torch's copy_ (float -> int truncates, anything ->
** bool is != 0).  The to.* ops always copy, even when torch would return
** the input itself: the result is equal either way, and a copy can never
** let a later in-place op write through to a read-only weight.
*/
#include "ew_util.h"

/* Output 0 with x's shape holding x converted to the exported dtype. */
static petrel_status cp_convert(pt_exec *ex, const pt_node *n, const pt_tensor *x) {
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    pt_copy_into(out, x);
    return PETREL_OK;
}

/* Output 0 with self's shape, every element set to the Scalar argument a
 * (or zero when a < 0). */
static petrel_status cp_fill(pt_exec *ex, const pt_node *n, const pt_tensor *self, int a) {
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, self->rank, self->shape, &out));
    ew_fill(out, a >= 0 ? pk_float(ex, n, a) : 0, a >= 0 ? ew_scalar_i64(ex, n, a) : 0);
    return PETREL_OK;
}

/*
** cpu_k_copy -- every op of the "copy" family in ops.def.  copy(self, src)
** returns src broadcast to self's shape in self's dtype (copy_ computes the
** same; the executor writes it into self).  Fails when src does not
** broadcast to self.
*/
petrel_status cpu_k_copy(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
    switch (n->op) {
    case PETREL_OP_CLONE:
    case PETREL_OP_TO_COPY:
    case PETREL_OP_TO_DTYPE:
    case PETREL_OP_TO_DTYPE_LAYOUT:
    case PETREL_OP_TO_DEVICE:
    case PETREL_OP_TYPE_AS:
    case PETREL_OP_LIFT_FRESH_COPY:
        return cp_convert(ex, n, x);
    case PETREL_OP_COPY:
    case PETREL_OP_COPY_:
    case PETREL_OP_FILL_TENSOR:  /* value is a 0-d tensor: a broadcast copy */
    case PETREL_OP_FILL__TENSOR: {
        const pt_tensor *src = pk_tensor(ex, n, 1);
        if (!src) return pk_fail(ex, PETREL_ERR_RUNTIME, "copy: src must be a tensor");
        pt_tensor view;
        if (!pt_broadcast_to(src, x->rank, x->shape, &view))
            return pk_fail(ex, PETREL_ERR_SHAPE, "copy: src does not broadcast to self's shape");
        pt_tensor *out;
        PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
        pt_copy_into(out, &view);
        return PETREL_OK;
    }
    case PETREL_OP_FILL_SCALAR:
    case PETREL_OP_FILL__SCALAR:
        return cp_fill(ex, n, x, 1);
    case PETREL_OP_ZERO_:
        return cp_fill(ex, n, x, -1);
    default:
        return pk_fail(ex, PETREL_ERR_RUNTIME, "not a copy op");
    }
}
