/*
** where.c -- CPU reference kernels for selection: where (tensor or scalar
** branches), masked_fill, and the clamps (clamp with scalar or tensor
** bounds, clamp_min, clamp_max, hardtanh).  Part of the CPU backend.
**
** All inputs broadcast to one output shape; values are read in double for
** float outputs and int64 otherwise, then stored once in the exported
** dtype.
*/
#include "ew_util.h"

/* A value source: a tensor broadcast to the output shape, a scalar, or
 * nothing (an absent clamp bound). */
typedef struct wh_src {
    bool present;
    const pt_tensor *t;  /* NULL for a scalar */
    pt_tensor view;
    double f;
    int64_t i;
} wh_src;

static petrel_status wh_tensor_src(pt_exec *ex, const pt_node *n, int a, wh_src *s) {
    memset(s, 0, sizeof *s);
    if (pk_is_none(ex, n, a)) return PETREL_OK;
    s->t = pk_tensor(ex, n, a);
    if (!s->t) return PETREL_OK;
    s->present = true;
    return PETREL_OK;
}

static void wh_scalar_src(pt_exec *ex, const pt_node *n, int a, wh_src *s) {
    memset(s, 0, sizeof *s);
    if (pk_is_none(ex, n, a)) return;
    s->present = true;
    s->f = pk_float(ex, n, a);
    s->i = ew_scalar_i64(ex, n, a);
}

static double wh_f64(const wh_src *s, const int64_t *idx) {
    return s->t ? pt_load_f64(pt_at(&s->view, idx), s->t->dtype) : s->f;
}

static int64_t wh_i64(const wh_src *s, const int64_t *idx) {
    return s->t ? pt_load_i64(pt_at(&s->view, idx), s->t->dtype) : s->i;
}

/* Broadcast the shapes of every tensor source into (rank, shape), then
 * make each tensor's view. */
static petrel_status wh_broadcast(pt_exec *ex, wh_src **srcs, int nsrc, int *rank,
                                  int64_t *shape) {
    *rank = 0;
    for (int k = 0; k < nsrc; k++) {
        const pt_tensor *t = srcs[k]->t;
        if (!t) continue;
        int64_t tmp[PETREL_MAX_RANK];
        int r;
        if (!pt_broadcast_shape(*rank, shape, t->rank, t->shape, &r, tmp))
            return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
        *rank = r;
        memcpy(shape, tmp, sizeof(int64_t) * (size_t)r);
    }
    for (int k = 0; k < nsrc; k++) {
        if (srcs[k]->t && !pt_broadcast_to(srcs[k]->t, *rank, shape, &srcs[k]->view))
            return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
    }
    return PETREL_OK;
}

/* out = cond ? a : b.  `cond` is any tensor read for truthiness. */
static petrel_status wh_select(pt_exec *ex, const pt_node *n, wh_src *cond, wh_src *a,
                               wh_src *b) {
    wh_src *srcs[3] = {cond, a, b};
    int rank;
    int64_t shape[PETREL_MAX_RANK];
    PT_TRY(wh_broadcast(ex, srcs, 3, &rank, shape));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    bool fl = ew_is_float(out->dtype);
    int64_t total = pt_numel(out), idx[PETREL_MAX_RANK] = {0};
    for (int64_t i = 0; i < total; i++, pt_next_index(idx, shape, rank)) {
        const wh_src *s = wh_f64(cond, idx) != 0 ? a : b;
        if (fl) pt_store_f64(ew_elem(out, i), out->dtype, wh_f64(s, idx));
        else if (out->dtype == PETREL_DTYPE_BOOL) /* 0.5 is true, not truncated to 0 */
            pt_store_i64(ew_elem(out, i), out->dtype, wh_f64(s, idx) != 0);
        else pt_store_i64(ew_elem(out, i), out->dtype, wh_i64(s, idx));
    }
    return PETREL_OK;
}

/* Clamp x into [lo, hi] (either bound may be absent).  A NaN input stays
 * NaN.  Tensor bounds propagate NaN like torch.clamp(Tensor); scalar
 * bounds behave as std::max/std::min, so a NaN scalar bound is ignored,
 * as torch's CPU kernel does.  With lo > hi the result is hi. */
static double wh_clamp_f64(double x, const wh_src *lo, const wh_src *hi, const int64_t *idx) {
    if (isnan(x)) return x;
    if (lo->present) {
        double l = wh_f64(lo, idx);
        if (isnan(l)) {
            if (lo->t) return l;
        } else if (x < l) {
            x = l;
        }
    }
    if (hi->present) {
        double h = wh_f64(hi, idx);
        if (isnan(h)) {
            if (hi->t) return h;
        } else if (x > h) {
            x = h;
        }
    }
    return x;
}

static petrel_status wh_clamp(pt_exec *ex, const pt_node *n, wh_src *x, wh_src *lo, wh_src *hi) {
    wh_src *srcs[3] = {x, lo, hi};
    int rank;
    int64_t shape[PETREL_MAX_RANK];
    PT_TRY(wh_broadcast(ex, srcs, 3, &rank, shape));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    bool fl = ew_is_float(out->dtype);
    int64_t total = pt_numel(out), idx[PETREL_MAX_RANK] = {0};
    for (int64_t i = 0; i < total; i++, pt_next_index(idx, shape, rank)) {
        if (fl) {
            pt_store_f64(ew_elem(out, i), out->dtype, wh_clamp_f64(wh_f64(x, idx), lo, hi, idx));
        } else {
            int64_t v = wh_i64(x, idx);
            if (lo->present && v < wh_i64(lo, idx)) v = wh_i64(lo, idx);
            if (hi->present && v > wh_i64(hi, idx)) v = wh_i64(hi, idx);
            pt_store_i64(ew_elem(out, i), out->dtype, v);
        }
    }
    return PETREL_OK;
}

/*
** cpu_k_where -- every op of the "where" family in ops.def: where.self /
** ScalarOther / ScalarSelf / Scalar, masked_fill (Scalar or 0-d Tensor
** value), clamp (Scalar? or Tensor? bounds), clamp_min, clamp_max and
** hardtanh.  Writes one fresh output; fails on shapes that do not
** broadcast or a masked_fill value tensor with more than one element.
*/
petrel_status cpu_k_where(pt_exec *ex, const pt_node *n) {
    wh_src a, b, c;
    switch (n->op) {
    case PETREL_OP_WHERE_SELF:
        PT_TRY(wh_tensor_src(ex, n, 0, &c));
        PT_TRY(wh_tensor_src(ex, n, 1, &a));
        PT_TRY(wh_tensor_src(ex, n, 2, &b));
        break;
    case PETREL_OP_WHERE_SCALAROTHER:
        PT_TRY(wh_tensor_src(ex, n, 0, &c));
        PT_TRY(wh_tensor_src(ex, n, 1, &a));
        wh_scalar_src(ex, n, 2, &b);
        break;
    case PETREL_OP_WHERE_SCALARSELF:
        PT_TRY(wh_tensor_src(ex, n, 0, &c));
        wh_scalar_src(ex, n, 1, &a);
        PT_TRY(wh_tensor_src(ex, n, 2, &b));
        break;
    case PETREL_OP_WHERE_SCALAR:
        PT_TRY(wh_tensor_src(ex, n, 0, &c));
        wh_scalar_src(ex, n, 1, &a);
        wh_scalar_src(ex, n, 2, &b);
        break;
    case PETREL_OP_MASKED_FILL_SCALAR:
    case PETREL_OP_MASKED_FILL__SCALAR:
    case PETREL_OP_MASKED_FILL_TENSOR:
        /* masked_fill(self, mask, value) == where(mask, value, self) */
        PT_TRY(wh_tensor_src(ex, n, 1, &c));
        PT_TRY(wh_tensor_src(ex, n, 0, &b));
        if (n->op == PETREL_OP_MASKED_FILL_TENSOR) {
            PT_TRY(wh_tensor_src(ex, n, 2, &a));
            if (!a.present || pt_numel(a.t) != 1)
                return pk_fail(ex, PETREL_ERR_RUNTIME,
                               "masked_fill only supports a 0-dimensional value tensor");
            /* read the single value as a scalar so it cannot widen the shape */
            a.f = pt_load_f64(a.t->data, a.t->dtype);
            a.i = pt_load_i64(a.t->data, a.t->dtype);
            a.t = NULL;
        } else {
            wh_scalar_src(ex, n, 2, &a);
        }
        break;
    case PETREL_OP_CLAMP:
    case PETREL_OP_CLAMP_:
        PT_TRY(wh_tensor_src(ex, n, 0, &a));
        wh_scalar_src(ex, n, 1, &b);
        wh_scalar_src(ex, n, 2, &c);
        break;
    case PETREL_OP_CLAMP_TENSOR:
        PT_TRY(wh_tensor_src(ex, n, 0, &a));
        PT_TRY(wh_tensor_src(ex, n, 1, &b));
        PT_TRY(wh_tensor_src(ex, n, 2, &c));
        break;
    case PETREL_OP_CLAMP_MIN:
        PT_TRY(wh_tensor_src(ex, n, 0, &a));
        wh_scalar_src(ex, n, 1, &b);
        memset(&c, 0, sizeof c);
        break;
    case PETREL_OP_CLAMP_MAX:
        PT_TRY(wh_tensor_src(ex, n, 0, &a));
        memset(&b, 0, sizeof b);
        wh_scalar_src(ex, n, 1, &c);
        break;
    case PETREL_OP_HARDTANH:
    case PETREL_OP_HARDTANH_:
        PT_TRY(wh_tensor_src(ex, n, 0, &a));
        wh_scalar_src(ex, n, 1, &b);
        wh_scalar_src(ex, n, 2, &c);
        break;
    default:
        return pk_fail(ex, PETREL_ERR_RUNTIME, "not a where/clamp op");
    }

    switch (n->op) {
    case PETREL_OP_WHERE_SELF:
    case PETREL_OP_WHERE_SCALAROTHER:
    case PETREL_OP_WHERE_SCALARSELF:
    case PETREL_OP_WHERE_SCALAR:
    case PETREL_OP_MASKED_FILL_SCALAR:
    case PETREL_OP_MASKED_FILL__SCALAR:
    case PETREL_OP_MASKED_FILL_TENSOR:
        if (!c.present || !a.present || !b.present)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "where: missing operand");
        return wh_select(ex, n, &c, &a, &b);
    default:
        if (!a.present) return pk_fail(ex, PETREL_ERR_RUNTIME, "clamp: missing input");
        return wh_clamp(ex, n, &a, &b, &c);
    }
}
