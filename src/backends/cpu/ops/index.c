/*
** index.c -- CPU reference kernels for indexing, scattering and sorting:
** embedding, index.Tensor (advanced indexing), index_select, gather,
** index_put, index_copy, index_add, slice_scatter, select_scatter, scatter
** (src, value, add), topk, sort, argsort and one_hot.  Part of the CPU
** backend.
**
** Every index is read as int64, negative values wrap once, and anything
** still out of range fails the node: no kernel here touches memory outside
** its tensors.  Scatter-style ops copy self into a fresh output first, then
** write into it (the executor copies back for the in-place spellings).
*/
#include <math.h>

#include "nn_util.h"

/* Wrap index v into [0, size) or fail. */
static petrel_status idx_wrap(pt_exec *ex, int64_t v, int64_t size, int64_t *out) {
    int64_t w = v < 0 ? v + size : v;
    if (w < 0 || w >= size)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "index %lld is out of bounds for size %lld",
                       (long long)v, (long long)size);
    *out = w;
    return PETREL_OK;
}

static bool idx_is_index_dtype(petrel_dtype dt) {
    return dt == PETREL_DTYPE_I64 || dt == PETREL_DTYPE_I32 || dt == PETREL_DTYPE_I16 ||
           dt == PETREL_DTYPE_I8 || dt == PETREL_DTYPE_U8 || dt == PETREL_DTYPE_BOOL;
}

/* Size of dim d of t, where a 0-d tensor acts as shape (1). */
static int64_t idx_dim(const pt_tensor *t, int d) { return t->rank > 0 ? t->shape[d] : 1; }

/* out = a fresh copy of self (output 0), for the scatter-style ops. */
static petrel_status idx_copy_self(pt_exec *ex, const pt_node *n, const pt_tensor *self,
                                   pt_tensor **out) {
    PT_TRY(pk_out_alloc(ex, n, 0, self->rank, self->shape, out));
    pt_copy_into(*out, self);
    return PETREL_OK;
}

/* dst op= src for one element: plain copy, or add (accumulate). */
static void idx_put_elem(uint8_t *dst, petrel_dtype dd, const uint8_t *src, petrel_dtype sd,
                         bool add) {
    if (!add)
        nu_copy_elem(dst, dd, src, sd);
    else if (pt_dtype_is_float(dd))
        pt_store_f64(dst, dd, pt_load_f64(dst, dd) + pt_load_f64(src, sd));
    else
        pt_store_i64(dst, dd, pt_load_i64(dst, dd) + pt_load_i64(src, sd));
}

/* ---- advanced indexing (index.Tensor, index_put) ------------------------ */

/* How self[indices] maps result positions to self positions. */
typedef struct adv_plan {
    const pt_tensor *self;
    bool has[PETREL_MAX_RANK];       /* self dim d is indexed by a tensor */
    pt_tensor view[PETREL_MAX_RANK]; /* index for dim d, broadcast to bshape */
    int br;
    int64_t bshape[PETREL_MAX_RANK]; /* broadcast shape of the index tensors */
    int first;                       /* result dim where the bshape dims start */
    int rrank;
    int64_t rshape[PETREL_MAX_RANK];
} adv_plan;

/* A boolean mask covering dims [d, d + mask rank) becomes one int64 index
 * tensor per covered dim holding the coordinates of its True elements
 * (row-major order, as nonzero() gives them).  Tensors live in scratch. */
static petrel_status adv_mask(pt_exec *ex, const pt_tensor *self, const pt_tensor *m, int d,
                              pt_tensor *outs) {
    for (int i = 0; i < m->rank; i++)
        if (m->shape[i] != self->shape[d + i])
            return pk_fail(ex, PETREL_ERR_SHAPE,
                           "mask of size %lld does not match indexed dim %d of size %lld",
                           (long long)m->shape[i], d + i, (long long)self->shape[d + i]);
    int64_t cnt = 0, numel = pt_numel(m);
    int64_t idx[PETREL_MAX_RANK] = {0};
    for (int64_t e = 0; e < numel; e++) {
        cnt += pt_load_i64(pt_at(m, idx), m->dtype) != 0;
        pt_next_index(idx, m->shape, m->rank);
    }
    for (int i = 0; i < m->rank; i++) {
        int64_t *buf = (int64_t *)nu_scratch(ex, cnt, sizeof(int64_t));
        if (!buf) return NU_NOMEM(ex);
        pt_tensor *t = &outs[i];
        memset(t, 0, sizeof *t);
        t->dtype = PETREL_DTYPE_I64;
        t->rank = 1;
        t->shape[0] = cnt;
        t->stride[0] = 1;
        t->data = (uint8_t *)buf;
    }
    int64_t k = 0;
    memset(idx, 0, sizeof idx);
    for (int64_t e = 0; e < numel; e++) {
        if (pt_load_i64(pt_at(m, idx), m->dtype) != 0) {
            for (int i = 0; i < m->rank; i++) ((int64_t *)outs[i].data)[k] = idx[i];
            k++;
        }
        pt_next_index(idx, m->shape, m->rank);
    }
    return PETREL_OK;
}

/* Build the plan for self[indices] (argument a of the node).  Result shape
 * follows torch: the broadcast index dims replace the indexed dims in place
 * when those are adjacent, and go first otherwise. */
static petrel_status adv_plan_make(pt_exec *ex, const pt_node *n, int a, const pt_tensor *self,
                                   adv_plan *p) {
    memset(p, 0, sizeof *p);
    p->self = self;
    int count;
    const pt_tensor **list = pk_tensors(ex, n, a, &count);
    if (!list && count > 0) return NU_NOMEM(ex);
    pt_tensor idxt[PETREL_MAX_RANK]; /* per self dim, before broadcasting */
    int d = 0;
    for (int i = 0; i < count; i++) {
        const pt_tensor *t = list[i];
        int span = t && (t->dtype == PETREL_DTYPE_BOOL || t->dtype == PETREL_DTYPE_U8)
                       ? (t->rank > 0 ? t->rank : 1)
                       : 1;
        if (d + span > self->rank)
            return pk_fail(ex, PETREL_ERR_SHAPE, "too many indices for a %d-D tensor",
                           self->rank);
        if (!t) {
            d++;
            continue;
        }
        if (!idx_is_index_dtype(t->dtype))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "indices must be integer or bool tensors");
        if (t->dtype == PETREL_DTYPE_BOOL || t->dtype == PETREL_DTYPE_U8) {
            if (t->rank == 0)
                return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "0-d boolean indices are not supported");
            PT_TRY(adv_mask(ex, self, t, d, &idxt[d]));
        } else {
            idxt[d] = *t;
        }
        for (int j = 0; j < span; j++) p->has[d + j] = true;
        d += span;
    }
    /* broadcast all index tensors together */
    int nidx = 0, firstd = -1, lastd = -1;
    p->br = 0;
    for (int i = 0; i < self->rank; i++) {
        if (!p->has[i]) continue;
        int64_t prev[PETREL_MAX_RANK]; /* pt_broadcast_shape must not write its input */
        memcpy(prev, p->bshape, sizeof prev);
        if (!pt_broadcast_shape(p->br, prev, idxt[i].rank, idxt[i].shape, &p->br, p->bshape))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index tensors do not broadcast together");
        if (firstd < 0) firstd = i;
        lastd = i;
        nidx++;
    }
    for (int i = 0; i < self->rank; i++)
        if (p->has[i] && !pt_broadcast_to(&idxt[i], p->br, p->bshape, &p->view[i]))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index tensors do not broadcast together");
    bool adjacent = true;
    for (int i = firstd; nidx > 0 && i <= lastd; i++) adjacent = adjacent && p->has[i];
    int nnone = self->rank - nidx;
    if (nnone + p->br > PETREL_MAX_RANK)
        return pk_fail(ex, PETREL_ERR_SHAPE, "indexing result has too many dims");
    p->first = (nidx > 0 && adjacent) ? firstd : 0;
    p->rrank = 0;
    /* sliced dims before the block (adjacent case only), the block, then
     * the remaining sliced dims in order */
    for (int i = 0; i < p->first; i++) p->rshape[p->rrank++] = self->shape[i];
    for (int i = 0; i < p->br; i++) p->rshape[p->rrank++] = p->bshape[i];
    for (int i = p->first; i < self->rank; i++)
        if (!p->has[i]) p->rshape[p->rrank++] = self->shape[i];
    return PETREL_OK;
}

/* Self position for result position ridx; fails on out-of-range indices. */
static petrel_status adv_source(pt_exec *ex, const adv_plan *p, const int64_t *ridx,
                                int64_t *src) {
    const int64_t *bidx = ridx + p->first;
    int r = 0; /* next result dim that belongs to a None (sliced) self dim */
    for (int d = 0; d < p->self->rank; d++) {
        if (p->has[d]) {
            int64_t v = pt_load_i64(pt_at(&p->view[d], bidx), p->view[d].dtype);
            PT_TRY(idx_wrap(ex, v, p->self->shape[d], &src[d]));
        } else {
            if (r == p->first) r += p->br; /* skip over the broadcast block */
            src[d] = ridx[r++];
        }
    }
    return PETREL_OK;
}

/* index.Tensor: output 0 = self[indices]. */
static petrel_status adv_index(pt_exec *ex, const pt_node *n, const pt_tensor *self) {
    adv_plan p;
    PT_TRY(adv_plan_make(ex, n, 1, self, &p));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, p.rrank, p.rshape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    size_t es = pt_elsize(out);
    int64_t ridx[PETREL_MAX_RANK] = {0}, src[PETREL_MAX_RANK];
    uint8_t *o = out->data;
    do {
        PT_TRY(adv_source(ex, &p, ridx, src));
        nu_copy_elem(o, out->dtype, pt_at(self, src), self->dtype);
        o += es;
    } while (pt_next_index(ridx, p.rshape, p.rrank));
    return PETREL_OK;
}

/* index_put: output 0 = copy of self with self[indices] = values (or +=
 * when accumulating); values broadcast to the indexed shape. */
static petrel_status adv_put(pt_exec *ex, const pt_node *n, const pt_tensor *self) {
    const pt_tensor *values = pk_tensor(ex, n, 2);
    if (!values) return pk_fail(ex, PETREL_ERR_SHAPE, "index_put values is None");
    bool add = pk_bool(ex, n, 3);
    adv_plan p;
    PT_TRY(adv_plan_make(ex, n, 1, self, &p));
    pt_tensor vv;
    if (!pt_broadcast_to(values, p.rrank, p.rshape, &vv))
        return pk_fail(ex, PETREL_ERR_SHAPE, "values do not broadcast to the indexed shape");
    pt_tensor *out;
    PT_TRY(idx_copy_self(ex, n, self, &out));
    if (nu_prod(p.rshape, p.rrank) == 0) return PETREL_OK;
    int64_t ridx[PETREL_MAX_RANK] = {0}, src[PETREL_MAX_RANK];
    do {
        PT_TRY(adv_source(ex, &p, ridx, src));
        idx_put_elem(pt_at(out, src), out->dtype, pt_at(&vv, ridx), vv.dtype, add);
    } while (pt_next_index(ridx, p.rshape, p.rrank));
    return PETREL_OK;
}

/* ---- dim-wise indexing -------------------------------------------------- */

/* Read a 0-d or 1-D index tensor into wrapped int64s (scratch). */
static petrel_status idx_load_list(pt_exec *ex, const pt_tensor *index, int64_t size,
                                   int64_t **out, int64_t *count) {
    if (!index || index->rank > 1 || !idx_is_index_dtype(index->dtype) ||
        index->dtype == PETREL_DTYPE_BOOL)
        return pk_fail(ex, PETREL_ERR_SHAPE, "index must be a 0-d or 1-D integer tensor");
    *count = pt_numel(index);
    *out = (int64_t *)nu_scratch(ex, *count, sizeof(int64_t));
    if (!*out) return NU_NOMEM(ex);
    for (int64_t i = 0; i < *count; i++) {
        int64_t at = i;
        int64_t v = pt_load_i64(pt_at(index, &at), index->dtype);
        PT_TRY(idx_wrap(ex, v, size, &(*out)[i]));
    }
    return PETREL_OK;
}

/* gather / scatter family: walk `index` (same rank as self); at each
 * position the dim-d coordinate is replaced by the index value.
 * gather reads self there into out; scatter writes src (or `value`) there
 * into out. */
typedef enum idx_walk_kind {
    WALK_GATHER, WALK_SCATTER, WALK_SCATTER_ADD, WALK_SCATTER_VALUE
} idx_walk_kind;


static petrel_status idx_walk(pt_exec *ex, const pt_node *n, idx_walk_kind kind,
                              const pt_tensor *self, int d, const pt_tensor *index,
                              const pt_tensor *src, bool value_is_int, int64_t ivalue,
                              double fvalue) {
    int r = self->rank;
    if (index->rank != r && !(r <= 1 && index->rank <= 1))
        return pk_fail(ex, PETREL_ERR_SHAPE, "index has rank %d, self has rank %d", index->rank, r);
    if (!idx_is_index_dtype(index->dtype) || index->dtype == PETREL_DTYPE_BOOL)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "index must be an integer tensor");
    int ir = index->rank;
    for (int j = 0; j < ir; j++) {
        if (j != d && index->shape[j] > idx_dim(self, j))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index size %lld exceeds self size %lld at dim %d",
                           (long long)index->shape[j], (long long)idx_dim(self, j), j);
        if (src && index->shape[j] > idx_dim(src, j))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index size %lld exceeds src size %lld at dim %d",
                           (long long)index->shape[j], (long long)idx_dim(src, j), j);
    }
    pt_tensor *out;
    if (kind == WALK_GATHER)
        PT_TRY(pk_out_alloc(ex, n, 0, index->rank, index->shape, &out));
    else
        PT_TRY(idx_copy_self(ex, n, self, &out));
    if (pt_numel(index) == 0) return PETREL_OK;
    int64_t idx[PETREL_MAX_RANK] = {0}, pos[PETREL_MAX_RANK];
    size_t es = pt_elsize(out);
    uint8_t *o = out->data;
    do {
        for (int j = 0; j < ir; j++) pos[j] = idx[j];
        int64_t v = pt_load_i64(pt_at(index, idx), index->dtype);
        PT_TRY(idx_wrap(ex, v, idx_dim(self, d), &pos[d]));
        switch (kind) {
        case WALK_GATHER:
            nu_copy_elem(o, out->dtype, pt_at(self, pos), self->dtype);
            o += es;
            break;
        case WALK_SCATTER:
        case WALK_SCATTER_ADD:
            idx_put_elem(pt_at(out, pos), out->dtype, pt_at(src, idx), src->dtype,
                         kind == WALK_SCATTER_ADD);
            break;
        case WALK_SCATTER_VALUE:
            if (value_is_int)
                pt_store_i64(pt_at(out, pos), out->dtype, ivalue);
            else
                pt_store_f64(pt_at(out, pos), out->dtype, fvalue);
            break;
        }
    } while (pt_next_index(idx, index->shape, ir));
    return PETREL_OK;
}

/* ---- sorting ------------------------------------------------------------ */

typedef struct sort_item {
    double f;      /* value of a float tensor */
    int64_t i;     /* value of an integer tensor */
    int64_t pos;   /* original position along the dim */
} sort_item;

/* Strict order: a goes before b.  NaN counts as larger than everything (so
 * it ends up last ascending and first descending, like torch). */
static bool sort_before(const sort_item *a, const sort_item *b, bool desc, bool is_int) {
    if (is_int) return desc ? a->i > b->i : a->i < b->i;
    bool an = isnan(a->f), bn = isnan(b->f);
    if (an || bn) return an != bn && (desc ? an : bn);
    return desc ? a->f > b->f : a->f < b->f;
}

/* Stable merge sort of v[0..len) using tmp (same size) as buffer. */
static void sort_merge(sort_item *v, sort_item *tmp, int64_t len, bool desc, bool is_int) {
    for (int64_t w = 1; w < len; w *= 2) {
        for (int64_t lo = 0; lo < len; lo += 2 * w) {
            int64_t mid = lo + w < len ? lo + w : len, hi = lo + 2 * w < len ? lo + 2 * w : len;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = sort_before(&v[j], &v[i], desc, is_int) ? v[j++] : v[i++];
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, (size_t)len * sizeof *v);
    }
}

/* sort / argsort / topk along dim d: every row is sorted (stable; ties keep
 * their original order) and the first `keep` entries are written.  Values
 * go to output `vout` and int64 positions to output `iout` (-1 = none). */
static petrel_status sort_rows(pt_exec *ex, const pt_node *n, const pt_tensor *x, int d,
                               int64_t keep, bool desc, int vout, int iout) {
    int r = x->rank;
    int64_t len = idx_dim(x, d);
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0; i < r; i++) shape[i] = i == d ? keep : x->shape[i];
    pt_tensor *ov = NULL, *oi = NULL;
    if (vout >= 0 && nu_out_used(n, vout)) PT_TRY(pk_out_alloc(ex, n, vout, r, shape, &ov));
    if (iout >= 0 && nu_out_used(n, iout))
        PT_TRY(pk_out_alloc_dtype(ex, n, iout, PETREL_DTYPE_I64, r, shape, &oi));
    sort_item *items = (sort_item *)nu_scratch(ex, len, sizeof(sort_item));
    sort_item *tmp = (sort_item *)nu_scratch(ex, len, sizeof(sort_item));
    if (!items || !tmp) return NU_NOMEM(ex);
    bool is_int = !pt_dtype_is_float(x->dtype);
    /* walk every row: all dims except d (rows shape has d collapsed to 1) */
    int64_t rows_shape[PETREL_MAX_RANK];
    for (int i = 0; i < r; i++) rows_shape[i] = i == d ? 1 : x->shape[i];
    if (nu_prod(rows_shape, r) == 0 || keep == 0) return PETREL_OK;
    int64_t ostride[PETREL_MAX_RANK];
    nu_contig_strides(r, shape, ostride);
    int64_t row[PETREL_MAX_RANK] = {0}, at[PETREL_MAX_RANK];
    do {
        for (int i = 0; i < r; i++) at[i] = row[i];
        for (int64_t j = 0; j < len; j++) {
            if (r > 0) at[d] = j;
            const uint8_t *p = pt_at(x, at);
            items[j].f = pt_load_f64(p, x->dtype);
            items[j].i = is_int ? pt_load_i64(p, x->dtype) : 0;
            items[j].pos = j;
        }
        sort_merge(items, tmp, len, desc, is_int);
        int64_t base = 0;
        for (int i = 0; i < r; i++) base += row[i] * ostride[i];
        int64_t step = r > 0 ? ostride[d] : 0;
        for (int64_t j = 0; j < keep; j++) {
            int64_t o = base + j * step;
            if (ov) {
                if (r > 0) at[d] = items[j].pos;
                nu_copy_elem(ov->data + o * (int64_t)pt_elsize(ov), ov->dtype, pt_at(x, at),
                             x->dtype);
            }
            if (oi) memcpy(oi->data + o * 8, &items[j].pos, 8);
        }
    } while (pt_next_index(row, rows_shape, r));
    return PETREL_OK;
}

/* ---- the family --------------------------------------------------------- */

/* What an op does; in-place spellings compute the same as functional ones. */
typedef enum idx_kind {
    IK_NONE, IK_EMBEDDING, IK_INDEX, IK_INDEX_PUT, IK_INDEX_SELECT, IK_INDEX_COPY,
    IK_INDEX_ADD, IK_GATHER, IK_SCATTER, IK_SCATTER_ADD, IK_SCATTER_VALUE, IK_SLICE_SCATTER,
    IK_SELECT_SCATTER, IK_TOPK, IK_SORT, IK_SORT_STABLE, IK_ARGSORT, IK_ARGSORT_STABLE,
    IK_ONE_HOT,
} idx_kind;

/* Kind of an op.  Ops that ops.def may list later are matched by target, so
 * they run as soon as they are added to this family. */
static idx_kind idx_decode(pt_op op) {
    switch (op) {
    case PETREL_OP_EMBEDDING: return IK_EMBEDDING;
    case PETREL_OP_INDEX_TENSOR: return IK_INDEX;
    case PETREL_OP_INDEX_PUT: case PETREL_OP_INDEX_PUT_: return IK_INDEX_PUT;
    case PETREL_OP_INDEX_SELECT: return IK_INDEX_SELECT;
    case PETREL_OP_INDEX_COPY: case PETREL_OP_INDEX_COPY_: return IK_INDEX_COPY;
    case PETREL_OP_GATHER: return IK_GATHER;
    case PETREL_OP_SCATTER_SRC: return IK_SCATTER;
    case PETREL_OP_SCATTER_ADD: return IK_SCATTER_ADD;
    case PETREL_OP_SCATTER_VALUE: return IK_SCATTER_VALUE;
    case PETREL_OP_SLICE_SCATTER: return IK_SLICE_SCATTER;
    case PETREL_OP_SELECT_SCATTER: return IK_SELECT_SCATTER;
    case PETREL_OP_TOPK: return IK_TOPK;
    case PETREL_OP_SORT: return IK_SORT;
    case PETREL_OP_SORT_STABLE: return IK_SORT_STABLE;
    case PETREL_OP_ARGSORT: return IK_ARGSORT;
    case PETREL_OP_ONE_HOT: return IK_ONE_HOT;
    default: break;
    }
    static const struct { const char *target; idx_kind kind; } later[] = {
        {"aten.argsort.stable", IK_ARGSORT_STABLE},
        {"aten.index_add.default", IK_INDEX_ADD},
        {"aten.index_add_.default", IK_INDEX_ADD},
        {"aten.scatter_.src", IK_SCATTER},
        {"aten.scatter_.value", IK_SCATTER_VALUE},
        {"aten.scatter_add_.default", IK_SCATTER_ADD},
    };
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
        if (strcmp(pt_op_table[op].target, later[i].target) == 0) return later[i].kind;
    return IK_NONE;
}

/*
** Kernel family "index": gathers (embedding, index.Tensor, index_select,
** gather), functional scatters (index_put, index_copy, index_add,
** slice_scatter, select_scatter, scatter.src/.value, scatter_add; in-place
** spellings compute the same result), sorting (topk, sort, argsort) and
** one_hot.
*/
petrel_status cpu_k_index(pt_exec *ex, const pt_node *n) {
    const pt_tensor *self = pk_tensor(ex, n, 0);
    if (!self) return pk_fail(ex, PETREL_ERR_SHAPE, "input is None");
    int64_t shape[PETREL_MAX_RANK];
    pt_tensor *out;
    int d;
    switch (idx_decode(n->op)) {
    case IK_EMBEDDING: {
        /* weight (V, D), indices (...) -> (..., D) */
        const pt_tensor *ind = pk_tensor(ex, n, 1);
        if (self->rank != 2 || !ind)
            return pk_fail(ex, PETREL_ERR_SHAPE, "embedding needs a 2-D weight and indices");
        if (!idx_is_index_dtype(ind->dtype) || ind->dtype == PETREL_DTYPE_BOOL)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "embedding indices must be integers");
        if (ind->rank + 1 > PETREL_MAX_RANK)
            return pk_fail(ex, PETREL_ERR_SHAPE, "rank too large");
        int64_t V = self->shape[0], D = self->shape[1];
        for (int i = 0; i < ind->rank; i++) shape[i] = ind->shape[i];
        shape[ind->rank] = D;
        PT_TRY(pk_out_alloc(ex, n, 0, ind->rank + 1, shape, &out));
        if (pt_numel(ind) == 0 || D == 0) return PETREL_OK;
        size_t es = pt_elsize(out);
        uint8_t *o = out->data;
        int64_t idx[PETREL_MAX_RANK] = {0};
        do {
            int64_t row = 0, at[2];
            PT_TRY(idx_wrap(ex, pt_load_i64(pt_at(ind, idx), ind->dtype), V, &row));
            at[0] = row;
            for (at[1] = 0; at[1] < D; at[1]++, o += es)
                nu_copy_elem(o, out->dtype, pt_at(self, at), self->dtype);
        } while (pt_next_index(idx, ind->shape, ind->rank));
        return PETREL_OK;
    }
    case IK_INDEX:
        return adv_index(ex, n, self);
    case IK_INDEX_PUT:
        return adv_put(ex, n, self);
    case IK_INDEX_SELECT:
    case IK_INDEX_COPY:
    case IK_INDEX_ADD: {
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), self->rank);
        int64_t *iv = NULL, cnt = 0;
        PT_TRY(idx_load_list(ex, pk_tensor(ex, n, 2), idx_dim(self, d), &iv, &cnt));
        int r = self->rank;
        for (int i = 0; i < r; i++) shape[i] = i == d ? cnt : self->shape[i];
        if (r == 0 && cnt != 1)
            return pk_fail(ex, PETREL_ERR_SHAPE, "index of a 0-d tensor must have one element");
        if (idx_decode(n->op) == IK_INDEX_SELECT) {
            PT_TRY(pk_out_alloc(ex, n, 0, r, shape, &out));
            if (pt_numel(out) == 0) return PETREL_OK;
            size_t es = pt_elsize(out);
            uint8_t *o = out->data;
            int64_t idx[PETREL_MAX_RANK] = {0}, src[PETREL_MAX_RANK];
            do {
                for (int i = 0; i < r; i++) src[i] = i == d ? iv[idx[i]] : idx[i];
                nu_copy_elem(o, out->dtype, pt_at(self, src), self->dtype);
                o += es;
            } while (pt_next_index(idx, shape, r));
            return PETREL_OK;
        }
        /* index_copy: out.select(d, index[i]) = source.select(d, i);
         * index_add: out.select(d, index[i]) += alpha * source.select(d, i) */
        const pt_tensor *source = pk_tensor(ex, n, 3);
        bool add = idx_decode(n->op) == IK_INDEX_ADD;
        bool same = source && source->rank == r;
        for (int i = 0; same && i < r; i++) same = source->shape[i] == shape[i];
        if (!same && !(source && r <= 1 && pt_numel(source) == cnt))
            return pk_fail(ex, PETREL_ERR_SHAPE, "index_copy/index_add source has the wrong shape");
        PT_TRY(idx_copy_self(ex, n, self, &out));
        if (nu_prod(shape, r) == 0) return PETREL_OK;
        pt_tensor sv = *source;
        if (source->rank != r) { /* 0-d vs 1-D of one element */
            sv.rank = r;
            for (int i = 0; i < r; i++) sv.shape[i] = shape[i], sv.stride[i] = 0;
        }
        bool fl = pt_dtype_is_float(out->dtype);
        double falpha = add ? pk_float(ex, n, 4) : 1.0;
        int64_t ialpha = add ? pk_int(ex, n, 4) : 1;
        int64_t idx[PETREL_MAX_RANK] = {0}, dst[PETREL_MAX_RANK];
        do {
            for (int i = 0; i < r; i++) dst[i] = i == d ? iv[idx[i]] : idx[i];
            uint8_t *o = pt_at(out, dst);
            const uint8_t *sp = pt_at(&sv, idx);
            if (!add)
                nu_copy_elem(o, out->dtype, sp, sv.dtype);
            else if (fl)
                pt_store_f64(o, out->dtype, pt_load_f64(o, out->dtype) +
                                                falpha * pt_load_f64(sp, sv.dtype));
            else
                pt_store_i64(o, out->dtype, pt_load_i64(o, out->dtype) +
                                                ialpha * pt_load_i64(sp, sv.dtype));
        } while (pt_next_index(idx, shape, r));
        return PETREL_OK;
    }
    case IK_GATHER: {
        const pt_tensor *index = pk_tensor(ex, n, 2);
        if (!index) return pk_fail(ex, PETREL_ERR_SHAPE, "gather index is None");
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), self->rank);
        return idx_walk(ex, n, WALK_GATHER, self, d, index, NULL, false, 0, 0.0);
    }
    case IK_SCATTER:
    case IK_SCATTER_ADD:
    case IK_SCATTER_VALUE: {
        const pt_tensor *index = pk_tensor(ex, n, 2);
        if (!index) return pk_fail(ex, PETREL_ERR_SHAPE, "scatter index is None");
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), self->rank);
        if (idx_decode(n->op) == IK_SCATTER_VALUE)
            return idx_walk(ex, n, WALK_SCATTER_VALUE, self, d, index, NULL,
                            pk_scalar_is_int(ex, n, 3), pk_int(ex, n, 3), pk_float(ex, n, 3));
        const pt_tensor *src = pk_tensor(ex, n, 3);
        if (!src) return pk_fail(ex, PETREL_ERR_SHAPE, "scatter src is None");
        if (src->rank != index->rank && !(src->rank <= 1 && index->rank <= 1))
            return pk_fail(ex, PETREL_ERR_SHAPE, "scatter src and index ranks differ");
        return idx_walk(ex, n,
                        idx_decode(n->op) == IK_SCATTER_ADD ? WALK_SCATTER_ADD : WALK_SCATTER,
                        self, d, index, src, false, 0, 0.0);
    }
    case IK_SLICE_SCATTER:
    case IK_SELECT_SCATTER: {
        const pt_tensor *src = pk_tensor(ex, n, 1);
        if (!src) return pk_fail(ex, PETREL_ERR_SHAPE, "src is None");
        if (self->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "scatter into a 0-d tensor");
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 2), self->rank);
        PT_TRY(idx_copy_self(ex, n, self, &out));
        pt_tensor dst = *out; /* the region of out that src replaces */
        int64_t size = self->shape[d];
        size_t es = pt_elsize(out);
        if (n->op == PETREL_OP_SELECT_SCATTER) {
            int64_t i = 0;
            PT_TRY(idx_wrap(ex, pk_int(ex, n, 3), size, &i));
            dst.data = out->data + i * out->stride[d] * (int64_t)es;
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
        pt_copy_into(&dst, src);
        return PETREL_OK;
    }
    case IK_TOPK: {
        int64_t k = pk_int(ex, n, 1);
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 2), self->rank);
        if (k < 0 || k > idx_dim(self, d))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "topk k=%lld out of range for size %lld",
                           (long long)k, (long long)idx_dim(self, d));
        /* results come out sorted even for sorted=False (torch leaves that
         * order unspecified) */
        return sort_rows(ex, n, self, d, k, pk_bool(ex, n, 3), 0, 1);
    }
    case IK_SORT:
    case IK_SORT_STABLE:
    case IK_ARGSORT:
    case IK_ARGSORT_STABLE: {
        /* the .stable overloads take (self, *, stable, dim, descending); the
         * sort is stable either way */
        idx_kind k = idx_decode(n->op);
        int a_dim = (k == IK_SORT_STABLE || k == IK_ARGSORT_STABLE) ? 2 : 1;
        NU_WRAP_DIM(ex, d, pk_int(ex, n, a_dim), self->rank);
        bool desc = pk_bool(ex, n, a_dim + 1);
        if (k == IK_ARGSORT || k == IK_ARGSORT_STABLE)
            return sort_rows(ex, n, self, d, idx_dim(self, d), desc, -1, 0);
        return sort_rows(ex, n, self, d, idx_dim(self, d), desc, 0, 1);
    }
    case IK_ONE_HOT: {
        if (pt_dtype_is_float(self->dtype) || self->dtype == PETREL_DTYPE_BOOL)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "one_hot needs an integer tensor");
        int64_t C = pk_int(ex, n, 1), numel = pt_numel(self);
        if (self->rank + 1 > PETREL_MAX_RANK)
            return pk_fail(ex, PETREL_ERR_SHAPE, "rank too large");
        int64_t idx[PETREL_MAX_RANK] = {0};
        if (C == -1) {
            if (numel == 0)
                return pk_fail(ex, PETREL_ERR_RUNTIME,
                               "one_hot cannot infer num_classes from an empty tensor");
            int64_t mx = INT64_MIN;
            do {
                int64_t v = pt_load_i64(pt_at(self, idx), self->dtype);
                if (v > mx) mx = v;
            } while (pt_next_index(idx, self->shape, self->rank));
            C = mx + 1;
        }
        if (C < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "one_hot num_classes must be >= 0");
        for (int i = 0; i < self->rank; i++) shape[i] = self->shape[i];
        shape[self->rank] = C;
        PT_TRY(pk_out_alloc(ex, n, 0, self->rank + 1, shape, &out));
        if (numel == 0 || C == 0) return PETREL_OK;
        size_t es = pt_elsize(out);
        memset(idx, 0, sizeof idx);
        int64_t row = 0;
        do {
            int64_t v = pt_load_i64(pt_at(self, idx), self->dtype);
            if (v < 0 || v >= C)
                return pk_fail(ex, PETREL_ERR_RUNTIME, "one_hot class %lld out of range [0, %lld)",
                               (long long)v, (long long)C);
            for (int64_t c = 0; c < C; c++)
                pt_store_i64(out->data + (row * C + c) * (int64_t)es, out->dtype, c == v);
            row++;
        } while (pt_next_index(idx, self->shape, self->rank));
        return PETREL_OK;
    }
    case IK_NONE:
        break;
    }
    return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "%s is not an indexing op",
                   pt_op_table[n->op].target);
}
