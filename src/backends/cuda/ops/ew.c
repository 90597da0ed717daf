/*
** ew.c -- host side of the CUDA elementwise iterator (ew.h): turns runtime
** tensors into a coalesced pcu_ew for the kernels, and fills dense device
** tensors.  Part of the CUDA backend.
*/
#include "ew.h"

#include "copy_k.h"

_Static_assert(PCU_EW_RANK == PETREL_MAX_RANK, "the iterator holds every rank a tensor can have");

void pcu_ew_begin(pcu_ew *it, const pt_tensor *out) {
    memset(it, 0, sizeof *it);
    it->rank = out->rank;
    for (int d = 0; d < out->rank; d++) {
        it->shape[d] = out->shape[d];
        it->out_stride[d] = out->stride[d];
    }
    it->out = out->data;
    it->out_dtype = (int32_t)out->dtype;
}

void pcu_ew_tensor(pcu_ew *it, const pt_tensor *view) {
    pcu_ew_arg *a = &it->in[it->nin++];
    a->data = view->data;
    a->dtype = (int32_t)view->dtype;
    for (int d = 0; d < view->rank; d++) a->stride[d] = view->stride[d];
}

void pcu_ew_scalar(pcu_ew *it, petrel_dtype dt, double f, int64_t i) {
    pcu_ew_arg *a = &it->in[it->nin++];
    a->dtype = (int32_t)dt;
    a->f = f;
    a->i = i;
}

/* Largest element offset a strided operand reaches. */
static int64_t ew_max_offset(int rank, const int64_t *shape, const int64_t *stride) {
    int64_t m = 0;
    for (int d = 0; d < rank; d++) m += (shape[d] - 1) * stride[d];
    return m;
}

void pcu_ew_end(pcu_ew *it) {
    int64_t numel = 1;
    for (int d = 0; d < it->rank; d++) numel *= it->shape[d];
    it->numel = numel;
    if (numel == 0) return;

    /* strides of every operand, the output last (scalars have all zeros) */
    int nops = it->nin + 1;
    int64_t *st[PCU_EW_MAXIN + 1];
    for (int k = 0; k < it->nin; k++) st[k] = it->in[k].stride;
    st[it->nin] = it->out_stride;

    /* innermost first; dim d folds into the previous kept dim when every
     * operand steps over it as one run */
    int64_t shape[PCU_EW_RANK], stride[PCU_EW_MAXIN + 1][PCU_EW_RANK];
    int r = 0;
    for (int d = it->rank - 1; d >= 0; d--) {
        int64_t sz = it->shape[d];
        if (sz == 1) continue;
        bool fold = r > 0;
        for (int k = 0; k < nops && fold; k++)
            fold = st[k][d] == stride[k][r - 1] * shape[r - 1];
        if (fold) {
            shape[r - 1] *= sz;
            continue;
        }
        shape[r] = sz;
        for (int k = 0; k < nops; k++) stride[k][r] = st[k][d];
        r++;
    }

    it->rank = r;
    bool idx32 = numel <= INT32_MAX, dense = r <= 1;
    for (int d = 0; d < PCU_EW_RANK; d++) it->shape[d] = d < r ? shape[d] : 1;
    for (int k = 0; k < nops; k++) {
        bool scalar = k < it->nin && !it->in[k].data;
        for (int d = 0; d < PCU_EW_RANK; d++) st[k][d] = d < r ? stride[k][d] : 0;
        if (scalar) continue;
        if (ew_max_offset(r, it->shape, st[k]) > INT32_MAX) idx32 = false;
        if (r == 1 && st[k][0] != 1) dense = false;
    }
    it->idx32 = idx32;
    it->dense = dense;
}

petrel_status pcu_ew_fill_elem(pt_exec *ex, const pt_tensor *out, const void *elem) {
    int64_t n = pt_numel(out);
    if (n == 0) return PETREL_OK;
    size_t es = pt_elsize(out);
    uint64_t bits = 0; /* little-endian: the element is the low bytes */
    memcpy(&bits, elem, es);
    PCU_LAUNCHED(ex, pcu_launch_fill(out->data, n, (int)es, bits, pcu_stream(ex)), "fill kernel");
    return PETREL_OK;
}

petrel_status pcu_ew_fill(pt_exec *ex, const pt_tensor *out, double fv, int64_t iv) {
    uint64_t elem = 0;
    pt_tensor host = {.dtype = out->dtype, .rank = 0, .data = (uint8_t *)&elem};
    ew_fill(&host, fv, iv);
    return pcu_ew_fill_elem(ex, out, &elem);
}
