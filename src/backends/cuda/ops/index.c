/*
** index.c -- the CUDA "index" family: embedding, index.Tensor (integer
** index tensors), index_select, gather, index_put, index_copy, index_add,
** slice_scatter, select_scatter, scatter (src, value, add) and one_hot;
** in-place spellings compute the functional result, which the executor
** copies back.  Host side: the argument checks and output shapes of
** backends/cpu/ops/index.c, then launches (index_k.cu).
**
** What stays on the CPU: boolean (and uint8) mask indices, whose result
** shape depends on the mask's values, one_hot without num_classes, and
** sorting (topk, sort, argsort).  Out-of-range index values cannot fail
** the node here (they live on the device): gathers read zeros for them
** and scatters skip them (index_k.h).
*/
#include <string.h>

#include "index_k.h"

#define IX_WRAP_DIM(ex, var, dim, rank)                                                   \
    do {                                                                                  \
        (var) = pt_wrap_dim((dim), (rank));                                               \
        if ((var) < 0)                                                                    \
            return pk_fail((ex), PETREL_ERR_RUNTIME, "dim %lld out of range for rank %d", \
                           (long long)(dim), (int)(rank));                                \
    } while (0)

static petrel_status ix_on_device(pt_exec *ex, const pt_tensor *t) {
    if (pcu_is_host_scalar(t))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "a Python number where a device tensor is needed");
    return PETREL_OK;
}

/* An integer index dtype (bool excluded: torch rejects it or treats it as
 * a mask). */
static bool ix_is_int_index(petrel_dtype dt) {
    return dt == PETREL_DTYPE_I64 || dt == PETREL_DTYPE_I32 || dt == PETREL_DTYPE_I16 ||
           dt == PETREL_DTYPE_I8 || dt == PETREL_DTYPE_U8;
}

/* Size of dim d of t, where a 0-d tensor acts as shape (1). */
static int64_t ix_dim(const pt_tensor *t, int d) { return t->rank > 0 ? t->shape[d] : 1; }

/* t, or for a 0-d t the same element as shape (1). */
static pt_tensor ix_at_least_1d(const pt_tensor *t) {
    pt_tensor v = *t;
    if (v.rank == 0) v.rank = 1, v.shape[0] = 1, v.stride[0] = 0;
    return v;
}

/* out = a fresh copy of self (output 0), for the scatter-style ops. */
static petrel_status ix_copy_self(pt_exec *ex, const pt_node *n, const pt_tensor *self,
                                  pt_tensor **out) {
    PT_TRY(pk_out_alloc(ex, n, 0, self->rank, self->shape, out));
    return pt_numel(self) > 0 ? pcu_copy_into(ex, *out, self) : PETREL_OK;
}

/* ---- take along a dim (embedding, index_select) ------------------------- */

/* True when the dims of t after d are dense among themselves (size-1 dims
 * ignored), so the elements behind one index form a contiguous row. */
static bool ix_inner_dense(const pt_tensor *t, int d) {
    int64_t expect = 1;
    for (int i = t->rank - 1; i > d; i--) {
        if (t->shape[i] == 1) continue;
        if (t->stride[i] != expect) return false;
        expect *= t->shape[i];
    }
    return true;
}

/* out = self taken at `index` along dim d (out is already allocated with
 * shape self[:d] + index.shape + self[d+1:]). */
static petrel_status ix_take(pt_exec *ex, const pt_tensor *self, int d, const pt_tensor *index,
                             const pt_tensor *out) {
    if (pt_numel(out) == 0) return PETREL_OK;
    pt_tensor sv = ix_at_least_1d(self);
    pcu_take a;
    memset(&a, 0, sizeof a);
    a.self = pcu_desc(&sv);
    a.index = pcu_desc(index);
    a.dim = d;
    a.nidx = pt_numel(index);
    a.inner = 1;
    for (int i = d + 1; i < sv.rank; i++) a.inner *= sv.shape[i];
    a.numel = pt_numel(out);
    a.out = out->data;
    a.odt = (int32_t)out->dtype;
    /* whole rows pay off from a few vector units on */
    a.rows = sv.dtype == out->dtype && ix_inner_dense(&sv, d) &&
             a.inner * (int64_t)pt_elsize(out) >= 64;
    PCU_LAUNCHED(ex, pcu_take_launch(&a, pcu_stream(ex)), "take kernel");
    return PETREL_OK;
}

/* embedding: weight (V, D), indices (...) -> (..., D). */
static petrel_status ix_embedding(pt_exec *ex, const pt_node *n, const pt_tensor *w) {
    const pt_tensor *ind = pk_tensor(ex, n, 1);
    if (w->rank != 2 || !ind)
        return pk_fail(ex, PETREL_ERR_SHAPE, "embedding needs a 2-D weight and indices");
    PT_TRY(ix_on_device(ex, ind));
    if (!ix_is_int_index(ind->dtype))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "embedding indices must be integers");
    if (ind->rank + 1 > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_SHAPE, "rank too large");
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0; i < ind->rank; i++) shape[i] = ind->shape[i];
    shape[ind->rank] = w->shape[1];
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, ind->rank + 1, shape, &out));
    return ix_take(ex, w, 0, ind, out);
}

/* A 0-d or 1-D integer index for the dim-wise ops. */
static petrel_status ix_index_list(pt_exec *ex, const pt_tensor *index) {
    if (!index || index->rank > 1 || !ix_is_int_index(index->dtype))
        return pk_fail(ex, PETREL_ERR_SHAPE, "index must be a 0-d or 1-D integer tensor");
    return ix_on_device(ex, index);
}

static petrel_status ix_index_select(pt_exec *ex, const pt_node *n, const pt_tensor *self) {
    int d;
    IX_WRAP_DIM(ex, d, pk_int(ex, n, 1), self->rank);
    const pt_tensor *index = pk_tensor(ex, n, 2);
    PT_TRY(ix_index_list(ex, index));
    int64_t cnt = pt_numel(index), shape[PETREL_MAX_RANK];
    if (self->rank == 0 && cnt != 1)
        return pk_fail(ex, PETREL_ERR_SHAPE, "index of a 0-d tensor must have one element");
    for (int i = 0; i < self->rank; i++) shape[i] = i == d ? cnt : self->shape[i];
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, self->rank, shape, &out));
    return ix_take(ex, self, d, index, out);
}

/* ---- walks (gather, scatter, index_copy, index_add) ---------------------- */

/* Launch a walk over wshape (rank r, made at least 1-D) whose descriptors
 * the caller filled in with the same rank. */
static petrel_status ix_walk_run(pt_exec *ex, pcu_walk *a, int r, const int64_t *wshape) {
    a->rank = r > 0 ? r : 1;
    a->numel = 1;
    for (int i = 0; i < a->rank; i++) {
        a->wshape[i] = r > 0 ? wshape[i] : 1;
        a->numel *= a->wshape[i];
    }
    if (a->numel == 0) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_walk_launch(a, pcu_stream(ex)), "gather/scatter kernel");
    return PETREL_OK;
}

/* gather and scatter(.src/.value/_add): walk `index` (same rank as self,
 * or both at most 1-D); the dim-d coordinate becomes the index value. */
static petrel_status ix_gather_scatter(pt_exec *ex, const pt_node *n, int kind,
                                       const pt_tensor *self) {
    const pt_tensor *index = pk_tensor(ex, n, 2);
    if (!index) return pk_fail(ex, PETREL_ERR_SHAPE, "gather/scatter index is None");
    PT_TRY(ix_on_device(ex, index));
    int d;
    IX_WRAP_DIM(ex, d, pk_int(ex, n, 1), self->rank);
    const pt_tensor *src = NULL;
    if (kind == PCU_WALK_SCATTER || kind == PCU_WALK_ADD) {
        src = pk_tensor(ex, n, 3);
        if (!src) return pk_fail(ex, PETREL_ERR_SHAPE, "scatter src is None");
        PT_TRY(ix_on_device(ex, src));
        if (src->rank != index->rank && !(src->rank <= 1 && index->rank <= 1))
            return pk_fail(ex, PETREL_ERR_SHAPE, "scatter src and index ranks differ");
    }
    int r = self->rank, ir = index->rank;
    if (ir != r && !(r <= 1 && ir <= 1))
        return pk_fail(ex, PETREL_ERR_SHAPE, "index has rank %d, self has rank %d", ir, r);
    if (!ix_is_int_index(index->dtype))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "index must be an integer tensor");
    for (int j = 0; j < ir; j++) {
        if (j != d && index->shape[j] > ix_dim(self, j))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index size %lld exceeds self size %lld at dim %d",
                           (long long)index->shape[j], (long long)ix_dim(self, j), j);
        if (src && index->shape[j] > ix_dim(src, j))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index size %lld exceeds src size %lld at dim %d",
                           (long long)index->shape[j], (long long)ix_dim(src, j), j);
    }
    pt_tensor *out;
    if (kind == PCU_WALK_GATHER) PT_TRY(pk_out_alloc(ex, n, 0, ir, index->shape, &out));
    else PT_TRY(ix_copy_self(ex, n, self, &out));
    pcu_walk a;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.dim = d;
    pt_tensor iv = ix_at_least_1d(index);
    pt_tensor tv = ix_at_least_1d(kind == PCU_WALK_GATHER ? self : out);
    a.index = pcu_desc(&iv);
    a.tgt = pcu_desc(&tv);
    if (src) {
        pt_tensor sv = ix_at_least_1d(src);
        a.src = pcu_desc(&sv);
    }
    a.out = out->data;
    a.odt = (int32_t)out->dtype;
    if (kind == PCU_WALK_FILL) {
        a.fill_is_int = pk_scalar_is_int(ex, n, 3);
        a.fill_i = pk_int(ex, n, 3);
        a.fill_f = pk_float(ex, n, 3);
    } else {
        a.fill_i = 1; /* scatter_add: alpha 1 */
        a.fill_f = 1.0;
    }
    return ix_walk_run(ex, &a, ir, index->shape);
}

/* index_copy: out.select(d, index[i]) = source.select(d, i);
 * index_add: out.select(d, index[i]) += alpha * source.select(d, i). */
static petrel_status ix_index_copy_add(pt_exec *ex, const pt_node *n, const pt_tensor *self,
                                       bool add) {
    int d;
    IX_WRAP_DIM(ex, d, pk_int(ex, n, 1), self->rank);
    const pt_tensor *index = pk_tensor(ex, n, 2), *source = pk_tensor(ex, n, 3);
    PT_TRY(ix_index_list(ex, index));
    int r = self->rank;
    int64_t cnt = pt_numel(index), shape[PETREL_MAX_RANK];
    for (int i = 0; i < r; i++) shape[i] = i == d ? cnt : self->shape[i];
    if (r == 0 && cnt != 1)
        return pk_fail(ex, PETREL_ERR_SHAPE, "index of a 0-d tensor must have one element");
    bool same = source && source->rank == r;
    for (int i = 0; same && i < r; i++) same = source->shape[i] == shape[i];
    if (!same && !(source && r <= 1 && pt_numel(source) == cnt))
        return pk_fail(ex, PETREL_ERR_SHAPE, "index_copy/index_add source has the wrong shape");
    PT_TRY(ix_on_device(ex, source));
    pt_tensor *out;
    PT_TRY(ix_copy_self(ex, n, self, &out));
    /* the walked shape is `shape`; source (one element when its rank
     * differs) and index (along d only) are viewed over it */
    int R = r > 0 ? r : 1;
    pt_tensor sv = *source, iv = *index;
    sv.rank = iv.rank = R;
    for (int i = 0; i < R; i++) {
        sv.shape[i] = iv.shape[i] = r > 0 ? shape[i] : 1;
        if (source->rank != r || r == 0) sv.stride[i] = 0;
        iv.stride[i] = i == d && index->rank == 1 ? index->stride[0] : 0;
    }
    pt_tensor tv = ix_at_least_1d(out);
    pcu_walk a;
    memset(&a, 0, sizeof a);
    a.kind = add ? PCU_WALK_ADD : PCU_WALK_SCATTER;
    a.dim = d;
    a.index = pcu_desc(&iv);
    a.src = pcu_desc(&sv);
    a.tgt = pcu_desc(&tv);
    a.fill_i = add ? pk_int(ex, n, 4) : 1;
    a.fill_f = add ? pk_float(ex, n, 4) : 1.0;
    return ix_walk_run(ex, &a, r, shape);
}

/* slice_scatter / select_scatter: out = self with a strided region
 * replaced by src. */
static petrel_status ix_region_scatter(pt_exec *ex, const pt_node *n, const pt_tensor *self) {
    const pt_tensor *src = pk_tensor(ex, n, 1);
    if (!src) return pk_fail(ex, PETREL_ERR_SHAPE, "src is None");
    PT_TRY(ix_on_device(ex, src));
    if (self->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "scatter into a 0-d tensor");
    int d;
    IX_WRAP_DIM(ex, d, pk_int(ex, n, 2), self->rank);
    pt_tensor *out;
    PT_TRY(ix_copy_self(ex, n, self, &out));
    pt_tensor dst = *out; /* the region of out that src replaces */
    int64_t size = self->shape[d];
    size_t es = pt_elsize(out);
    if (n->op == PETREL_OP_SELECT_SCATTER) {
        int64_t i = pk_int(ex, n, 3), w = i < 0 ? i + size : i;
        if (w < 0 || w >= size)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "index %lld is out of bounds for size %lld",
                           (long long)i, (long long)size);
        dst.data = out->data + w * out->stride[d] * (int64_t)es;
        dst.rank = self->rank - 1;
        for (int j = d; j < dst.rank; j++)
            dst.shape[j] = out->shape[j + 1], dst.stride[j] = out->stride[j + 1];
    } else {
        int64_t step = pk_int(ex, n, 5);
        if (step < 1) return pk_fail(ex, PETREL_ERR_SHAPE, "slice step must be positive");
        int64_t s = pk_is_none(ex, n, 3) ? 0 : pk_int(ex, n, 3);
        int64_t e = pk_is_none(ex, n, 4) ? size : pk_int(ex, n, 4);
        if (s < 0) s += size;
        if (e < 0) e += size;
        s = s < 0 ? 0 : s > size ? size : s;
        e = e < s ? s : e > size ? size : e;
        dst.shape[d] = (e - s + step - 1) / step;
        dst.stride[d] = out->stride[d] * step;
        if (dst.shape[d] > 0) dst.data = out->data + s * out->stride[d] * (int64_t)es;
    }
    bool same = src->rank == dst.rank;
    for (int j = 0; same && j < dst.rank; j++) same = src->shape[j] == dst.shape[j];
    if (!same) return pk_fail(ex, PETREL_ERR_SHAPE, "src does not match the scattered region");
    return pt_numel(&dst) > 0 ? pcu_copy_into(ex, &dst, src) : PETREL_OK;
}

/* ---- advanced indexing (index.Tensor, index_put) -------------------------- */

/* How self[indices] maps result positions to self positions (the CPU
 * plan without boolean masks). */
typedef struct ix_plan {
    bool has[PETREL_MAX_RANK];       /* self dim d is indexed by a tensor */
    pt_tensor view[PETREL_MAX_RANK]; /* index for dim d, broadcast to bshape */
    int br;
    int64_t bshape[PETREL_MAX_RANK]; /* broadcast shape of the index tensors */
    int first;                       /* result dim where the bshape dims start */
    int rrank;
    int64_t rshape[PETREL_MAX_RANK];
} ix_plan;

/* Plan self[indices] (argument a).  Result shape as torch: the broadcast
 * index dims replace the indexed dims in place when those are adjacent,
 * and go first otherwise. */
static petrel_status ix_plan_make(pt_exec *ex, const pt_node *n, int a, const pt_tensor *self,
                                  ix_plan *p) {
    memset(p, 0, sizeof *p);
    int count;
    const pt_tensor **list = pk_tensors(ex, n, a, &count);
    if (!list && count > 0) return pk_fail(ex, PETREL_ERR_NOMEM, "out of scratch memory");
    if (count > self->rank)
        return pk_fail(ex, PETREL_ERR_SHAPE, "too many indices for a %d-D tensor", self->rank);
    int nidx = 0, firstd = -1, lastd = -1;
    for (int d = 0; d < count; d++) {
        const pt_tensor *t = list[d];
        if (!t) continue;
        PT_TRY(ix_on_device(ex, t));
        if (t->dtype == PETREL_DTYPE_BOOL || t->dtype == PETREL_DTYPE_U8)
            return pk_fail(ex, PETREL_ERR_UNSUPPORTED,
                           "boolean mask indices are not supported on CUDA");
        if (!ix_is_int_index(t->dtype))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "indices must be integer or bool tensors");
        int64_t prev[PETREL_MAX_RANK]; /* pt_broadcast_shape must not write its input */
        memcpy(prev, p->bshape, sizeof prev);
        if (!pt_broadcast_shape(p->br, prev, t->rank, t->shape, &p->br, p->bshape))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index tensors do not broadcast together");
        p->has[d] = true;
        if (firstd < 0) firstd = d;
        lastd = d;
        nidx++;
    }
    for (int d = 0; d < count; d++)
        if (p->has[d] && !pt_broadcast_to(list[d], p->br, p->bshape, &p->view[d]))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index tensors do not broadcast together");
    bool adjacent = true;
    for (int d = firstd; nidx > 0 && d <= lastd; d++) adjacent = adjacent && p->has[d];
    if (self->rank - nidx + p->br > PETREL_MAX_RANK)
        return pk_fail(ex, PETREL_ERR_SHAPE, "indexing result has too many dims");
    p->first = (nidx > 0 && adjacent) ? firstd : 0;
    /* sliced dims before the block (adjacent case only), the block, then
     * the remaining sliced dims in order */
    for (int i = 0; i < p->first; i++) p->rshape[p->rrank++] = self->shape[i];
    for (int i = 0; i < p->br; i++) p->rshape[p->rrank++] = p->bshape[i];
    for (int i = p->first; i < self->rank; i++)
        if (!p->has[i]) p->rshape[p->rrank++] = self->shape[i];
    return PETREL_OK;
}

/* The launch block of a plan over `self` (read, or written for put). */
static void ix_adv_init(pcu_adv *a, const ix_plan *p, const pt_tensor *self) {
    memset(a, 0, sizeof *a);
    a->self = pcu_desc(self);
    for (int d = 0; d < self->rank; d++) {
        if (!p->has[d]) continue;
        a->has[d] = 1;
        a->idata[d] = p->view[d].data;
        a->idt[d] = (int32_t)p->view[d].dtype;
        for (int k = 0; k < p->br; k++) a->istride[d][k] = p->view[d].stride[k];
    }
    a->br = p->br;
    a->first = p->first;
    a->rrank = p->rrank;
    a->numel = 1;
    for (int i = 0; i < p->rrank; i++) {
        a->rshape[i] = p->rshape[i];
        a->numel *= p->rshape[i];
    }
}

/* index.Tensor: output 0 = self[indices]. */
static petrel_status ix_adv_index(pt_exec *ex, const pt_node *n, const pt_tensor *self) {
    ix_plan p;
    PT_TRY(ix_plan_make(ex, n, 1, self, &p));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, p.rrank, p.rshape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    pcu_adv a;
    ix_adv_init(&a, &p, self);
    a.out = out->data;
    a.odt = (int32_t)out->dtype;
    PCU_LAUNCHED(ex, pcu_adv_launch(&a, pcu_stream(ex)), "index kernel");
    return PETREL_OK;
}

/* index_put: output 0 = copy of self with self[indices] = values (or +=
 * when accumulating); values broadcast to the indexed shape. */
static petrel_status ix_adv_put(pt_exec *ex, const pt_node *n, const pt_tensor *self) {
    const pt_tensor *values = pk_tensor(ex, n, 2);
    if (!values) return pk_fail(ex, PETREL_ERR_SHAPE, "index_put values is None");
    ix_plan p;
    PT_TRY(ix_plan_make(ex, n, 1, self, &p));
    pt_tensor vv;
    if (!pt_broadcast_to(values, p.rrank, p.rshape, &vv))
        return pk_fail(ex, PETREL_ERR_SHAPE, "values do not broadcast to the indexed shape");
    pt_tensor *out;
    PT_TRY(ix_copy_self(ex, n, self, &out));
    pcu_adv a;
    ix_adv_init(&a, &p, out);
    if (a.numel == 0) return PETREL_OK;
    a.put = 1;
    a.accumulate = pk_bool(ex, n, 3);
    if (pcu_is_host_scalar(values)) {
        /* a Python number: its value travels with the launch */
        a.fill = 1;
        a.fill_is_int = !pt_dtype_is_float(values->dtype);
        a.fill_i = pt_load_i64(values->data, values->dtype);
        a.fill_f = pt_load_f64(values->data, values->dtype);
    } else {
        a.values = pcu_desc(&vv);
    }
    PCU_LAUNCHED(ex, pcu_adv_launch(&a, pcu_stream(ex)), "index_put kernel");
    return PETREL_OK;
}

/* one_hot with an explicit class count (-1 would size the output from the
 * data, which a device kernel cannot do without a sync). */
static petrel_status ix_one_hot(pt_exec *ex, const pt_node *n, const pt_tensor *self) {
    if (pt_dtype_is_float(self->dtype) || self->dtype == PETREL_DTYPE_BOOL)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "one_hot needs an integer tensor");
    int64_t C = pk_int(ex, n, 1), shape[PETREL_MAX_RANK];
    if (C == -1)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "one_hot without num_classes on CUDA");
    if (C < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "one_hot num_classes must be >= 0");
    if (self->rank + 1 > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_SHAPE, "rank too large");
    for (int i = 0; i < self->rank; i++) shape[i] = self->shape[i];
    shape[self->rank] = C;
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, self->rank + 1, shape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    pcu_one_hot a;
    memset(&a, 0, sizeof a);
    a.self = pcu_desc(self);
    a.classes = C;
    a.numel = pt_numel(out);
    a.out = out->data;
    a.odt = (int32_t)out->dtype;
    PCU_LAUNCHED(ex, pcu_one_hot_launch(&a, pcu_stream(ex)), "one_hot kernel");
    return PETREL_OK;
}

/* topk of a float tensor along a dim (the CPU kernel's order: see
 * index_k.h); integer inputs stay on the CPU (caps.c). */
static petrel_status ix_topk(pt_exec *ex, const pt_node *n, const pt_tensor *self) {
    int64_t k = pk_int(ex, n, 1);
    int r = self->rank, d = pt_wrap_dim(pk_int(ex, n, 2), r > 0 ? r : 1);
    if (d < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "dim %lld out of range for rank %d", (long long)pk_int(ex, n, 2), r);
    int64_t len = r > 0 ? self->shape[d] : 1;
    if (k < 0 || k > len)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "topk k=%lld out of range for size %lld", (long long)k, (long long)len);
    if (self->dtype != PETREL_DTYPE_F32 && self->dtype != PETREL_DTYPE_F16 && self->dtype != PETREL_DTYPE_BF16)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA topk needs an f32/f16/bf16 input, got %s",
                       petrel_dtype_name(self->dtype));
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0; i < r; i++) shape[i] = i == d ? k : self->shape[i];
    pt_tensor *ov = NULL, *oi = NULL;
    if (n->nout > 0 && n->outs[0] >= 0) PT_TRY(pk_out_alloc(ex, n, 0, r, shape, &ov));
    if (n->nout > 1 && n->outs[1] >= 0) PT_TRY(pk_out_alloc_dtype(ex, n, 1, PETREL_DTYPE_I64, r, shape, &oi));
    pcu_topk_rows a;
    memset(&a, 0, sizeof a);
    a.self = pcu_desc(self);
    if (r == 0) a.self.rank = 1, a.self.shape[0] = 1, a.self.stride[0] = 0; /* a 0-d tensor: one row of one */
    a.dim = d, a.len = len, a.k = k, a.largest = pk_bool(ex, n, 3);
    a.rows = len > 0 ? pt_numel(self) / len : 0;
    int64_t st = 1;
    for (int i = a.self.rank - 1; i >= 0; i--) {
        a.ostride[i] = st;
        st *= i == d ? k : a.self.shape[i];
    }
    a.vals = ov ? ov->data : NULL, a.idx = oi ? oi->data : NULL;
    if (a.rows == 0 || k == 0 || (!ov && !oi)) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_topk_rows_launch(&a, pcu_stream(ex)), "topk kernel");
    return PETREL_OK;
}

/*
** Kernel family "index" on CUDA: embedding, index.Tensor, index_select,
** gather, index_put(_), index_copy(_), index_add(_), slice_scatter,
** select_scatter, scatter.src/.value, scatter_add (and their in-place
** spellings), one_hot and topk (float inputs).
*/
petrel_status cuda_k_index(pt_exec *ex, const pt_node *n) {
    const pt_tensor *self = pk_tensor(ex, n, 0);
    if (!self) return pk_fail(ex, PETREL_ERR_SHAPE, "input is None");
    PT_TRY(ix_on_device(ex, self));
    switch (n->op) {
    case PETREL_OP_EMBEDDING:
        return ix_embedding(ex, n, self);
    case PETREL_OP_INDEX_TENSOR:
        return ix_adv_index(ex, n, self);
    case PETREL_OP_INDEX_PUT:
    case PETREL_OP_INDEX_PUT_:
        return ix_adv_put(ex, n, self);
    case PETREL_OP_INDEX_SELECT:
        return ix_index_select(ex, n, self);
    case PETREL_OP_INDEX_COPY:
    case PETREL_OP_INDEX_COPY_:
        return ix_index_copy_add(ex, n, self, false);
    case PETREL_OP_INDEX_ADD:
    case PETREL_OP_INDEX_ADD_:
        return ix_index_copy_add(ex, n, self, true);
    case PETREL_OP_GATHER:
        return ix_gather_scatter(ex, n, PCU_WALK_GATHER, self);
    case PETREL_OP_SCATTER_SRC:
    case PETREL_OP_SCATTER__SRC:
        return ix_gather_scatter(ex, n, PCU_WALK_SCATTER, self);
    case PETREL_OP_SCATTER_VALUE:
    case PETREL_OP_SCATTER__VALUE:
        return ix_gather_scatter(ex, n, PCU_WALK_FILL, self);
    case PETREL_OP_SCATTER_ADD:
    case PETREL_OP_SCATTER_ADD_:
        return ix_gather_scatter(ex, n, PCU_WALK_ADD, self);
    case PETREL_OP_SLICE_SCATTER:
    case PETREL_OP_SELECT_SCATTER:
        return ix_region_scatter(ex, n, self);
    case PETREL_OP_ONE_HOT:
        return ix_one_hot(ex, n, self);
    case PETREL_OP_TOPK:
        return ix_topk(ex, n, self);
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "%s has no CUDA kernel",
                       pt_op_table[n->op].target);
    }
}
