/*
** noop.c -- CPU kernels for the export's runtime checks, which produce no
** value: _assert_tensor_metadata, _assert_scalar, _assert_async.msg and
** the sym_constrain_range* hints.  Part of the CPU backend.
**
** Metadata asserts and range hints are already enforced where the
** executor binds inputs and checks every produced shape against the
** export, so they do nothing here; the scalar and tensor asserts check
** their condition and fail with the program's own message.
*/
#include "ew_util.h"

/*
** cpu_k_noop -- every op of the "noop" family in ops.def.  Produces no
** outputs.  Fails with the assert message when an _assert_scalar
** condition is false or an _assert_async tensor holds a zero.
*/
petrel_status cpu_k_noop(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_ASSERT_SCALAR:
        if (pk_float(ex, n, 0) == 0) {
            const char *msg = pk_str(ex, n, 1);
            return pk_fail(ex, PETREL_ERR_RUNTIME, "%s", msg ? msg : "assertion failed");
        }
        return PETREL_OK;
    case PETREL_OP_ASSERT_ASYNC_MSG: {
        const pt_tensor *t = pk_tensor(ex, n, 0);
        if (t && pt_numel(t) == 1 && pt_load_f64(t->data, t->dtype) == 0) {
            const char *msg = pk_str(ex, n, 1);
            return pk_fail(ex, PETREL_ERR_RUNTIME, "%s", msg ? msg : "assertion failed");
        }
        return PETREL_OK;
    }
    case PETREL_OP_ASSERT_TENSOR_METADATA:
    case PETREL_OP_SYM_CONSTRAIN_RANGE_FOR_SIZE:
    case PETREL_OP_SYM_CONSTRAIN_RANGE:
        return PETREL_OK;
    default:
        return pk_fail(ex, PETREL_ERR_RUNTIME, "not a no-op");
    }
}
