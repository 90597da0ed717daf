/*
** copy.c -- CUDA kernels for copies and fills, host side: pcu_copy_into
** (the backend's strided converting device copy, also used by the
** executor) and the copy family: clone, _to_copy, the to.* conversions,
** type_as, lift_fresh_copy, copy / copy_, fill / fill_ and zero_.  The
** kernels are in copy_k.cu.  Part of the CUDA backend.
**
** Mirrors the CPU reference (cpu/ops/copy.c): every op writes a fresh
** contiguous output of the exported dtype, converting like torch's copy_.
*/
#include "copy_k.h"
#include "ew.h"

/*
** pcu_copy_into -- dst <- src element by element (same shape, any strides
** and dtypes, both on the device), converted as pt_copy_into does on the
** host.  Dense same-dtype copies are one cudaMemcpyAsync; dst and src may
** not overlap partially.  Fails on a shape mismatch or a CUDA error.
*/
petrel_status pcu_copy_into(pt_exec *ex, const pt_tensor *dst, const pt_tensor *src) {
    if (dst->rank != src->rank ||
        memcmp(dst->shape, src->shape, sizeof(int64_t) * (size_t)dst->rank) != 0)
        return pk_fail(ex, PETREL_ERR_SHAPE, "copy: source and destination shapes differ");
    pcu_ew it;
    pcu_ew_begin(&it, dst);
    pcu_ew_tensor(&it, src);
    pcu_ew_end(&it);
    if (it.numel == 0) return PETREL_OK;
    if (dst->dtype == src->dtype && it.dense) {
        if (dst->data != src->data)
            PCU_TRY(ex, cudaMemcpyAsync(dst->data, src->data, (size_t)it.numel * pt_elsize(dst),
                                        cudaMemcpyDeviceToDevice, pcu_stream(ex)));
        return PETREL_OK;
    }
    PCU_LAUNCHED(ex, pcu_launch_copy(&it, pcu_stream(ex)), "copy kernel");
    return PETREL_OK;
}

/* out <- src, where src has out's shape (a broadcast view) or is a wrapped
 * Python number (a host 0-d tensor), which becomes a fill with the value
 * converted on the host exactly as pt_copy_into converts it. */
static petrel_status cp_from(pt_exec *ex, const pt_tensor *out, const pt_tensor *src) {
    if (!pcu_is_host_scalar(src)) return pcu_copy_into(ex, out, src);
    uint64_t elem = 0;
    pt_tensor host = {.dtype = out->dtype, .rank = 0, .data = (uint8_t *)&elem};
    pt_copy_into(&host, src);
    return pcu_ew_fill_elem(ex, out, &elem);
}

/* Output 0 with self's shape, every element set to the Scalar argument a
 * (or zero when a < 0). */
static petrel_status cp_fill(pt_exec *ex, const pt_node *n, const pt_tensor *self, int a) {
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, self->rank, self->shape, &out));
    return pcu_ew_fill(ex, out, a >= 0 ? pk_float(ex, n, a) : 0, a >= 0 ? ew_scalar_i64(ex, n, a) : 0);
}

/*
** cuda_k_copy -- every op of the "copy" family in ops.def, as cpu_k_copy
** computes it.  copy(self, src) returns src broadcast to self's shape in
** self's dtype (copy_ computes the same; the executor writes it into
** self).  Fails when src does not broadcast to self.
*/
petrel_status cuda_k_copy(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
    pt_tensor *out;
    switch (n->op) {
    case PETREL_OP_CLONE:
    case PETREL_OP_TO_COPY:
    case PETREL_OP_TO_DTYPE:
    case PETREL_OP_TO_DTYPE_LAYOUT:
    case PETREL_OP_TO_DEVICE:
    case PETREL_OP_TYPE_AS:
    case PETREL_OP_LIFT_FRESH_COPY:
        PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
        return cp_from(ex, out, x);
    case PETREL_OP_COPY:
    case PETREL_OP_COPY_:
    case PETREL_OP_FILL_TENSOR:  /* value is a 0-d tensor: a broadcast copy */
    case PETREL_OP_FILL__TENSOR: {
        const pt_tensor *src = pk_tensor(ex, n, 1);
        if (!src) return pk_fail(ex, PETREL_ERR_RUNTIME, "copy: src must be a tensor");
        pt_tensor view;
        if (!pt_broadcast_to(src, x->rank, x->shape, &view))
            return pk_fail(ex, PETREL_ERR_SHAPE, "copy: src does not broadcast to self's shape");
        PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
        return cp_from(ex, out, pcu_is_host_scalar(src) ? src : &view);
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
