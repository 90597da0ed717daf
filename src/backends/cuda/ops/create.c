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
#include "../../cpu/ops/create_plan.h"
#include "create_k.h"
#include "ew.h"

/*
** cuda_k_create -- every op of the "create" family in ops.def, as
** cpu_k_create computes it (create_plan.h reads and checks the
** arguments): fills in copy_k.cu, arange's values in create_k.cu.
*/
petrel_status cuda_k_create(pt_exec *ex, const pt_node *n) {
    create_plan p;
    PT_TRY(create_plan_of(ex, n, &p));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, p.rank, p.shape, &out));
    if (!p.arange) return pcu_ew_fill(ex, out, p.fv, p.iv);
    PCU_LAUNCHED(ex,
                 pcu_launch_arange(out->data, (int)out->dtype, p.shape[0], p.fl, p.fs, p.fst, p.is, p.ist,
                                   pcu_stream(ex)),
                 "arange kernel");
    return PETREL_OK;
}
