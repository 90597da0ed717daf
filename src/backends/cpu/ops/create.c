/*
** create.c -- CPU reference kernels for tensor factories: arange, full,
** zeros, ones, empty, empty_strided, empty_permuted, the *_like and new_*
** variants and scalar_tensor.  Part of the CPU backend.
**
** The output dtype is the exported one (dtype= arguments are already in
** the meta).  empty* outputs are zero-filled so runs are deterministic;
** empty_strided's strides only describe torch's layout of undefined
** contents (as does empty_permuted's physical layout), so their outputs
** are plain contiguous tensors.
*/
#include "create_plan.h"

/*
** cpu_k_create -- every op of the "create" family in ops.def
** (create_plan.h reads and checks the arguments).  Writes one fresh
** output.
*/
petrel_status cpu_k_create(pt_exec *ex, const pt_node *n) {
    create_plan p;
    PT_TRY(create_plan_of(ex, n, &p));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, p.rank, p.shape, &out));
    if (!p.arange) {
        ew_fill(out, p.fv, p.iv);
        return PETREL_OK;
    }
    petrel_dtype odt = out->dtype;
    for (int64_t i = 0; i < p.shape[0]; i++) {
        if (p.fl) pt_store_f64(ew_elem(out, i), odt, p.fs + p.fst * (double)i);
        else pt_store_i64(ew_elem(out, i), odt, (int64_t)((uint64_t)p.is + (uint64_t)p.ist * (uint64_t)i));
    }
    return PETREL_OK;
}
