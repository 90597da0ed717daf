/*
** where.c -- CUDA kernels for selection, host side: where (tensor or
** scalar branches), masked_fill, and the clamps (clamp with scalar or
** tensor bounds, clamp_min, clamp_max, hardtanh).  The kernels are in
** where_k.cu.  Part of the CUDA backend.
**
** Mirrors the CPU reference (cpu/ops/where.c): all inputs broadcast to one
** output shape; values are read in float (f32/f16/bf16 outputs), double
** (f64 and bool outputs, so that 0.5 stays true) or int64, then stored once
** in the exported dtype.
*/
#include "ew.h"
#include "where_k.h"

/* A value source: a device tensor broadcast to the output shape, a scalar,
 * or nothing (an absent clamp bound). */
typedef struct wh_src {
    bool present;
    bool tensor;         /* from a Tensor argument: a NaN bound propagates */
    bool pinned;         /* one-element tensor read everywhere (masked_fill value) */
    const pt_tensor *t;  /* device tensor; NULL for a scalar */
    pt_tensor view;
    double f;
    int64_t i;
} wh_src;

/* A Tensor argument.  A wrapped Python number arrives as a host 0-d tensor
 * and becomes a scalar (it has rank 0, so it never widens the shape). */
static void wh_tensor_src(pt_exec *ex, const pt_node *n, int a, wh_src *s) {
    memset(s, 0, sizeof *s);
    if (pk_is_none(ex, n, a)) return;
    const pt_tensor *t = pk_tensor(ex, n, a);
    if (!t) return;
    s->present = s->tensor = true;
    if (pcu_is_host_scalar(t)) {
        s->f = pt_load_f64(t->data, t->dtype);
        s->i = pt_load_i64(t->data, t->dtype);
    } else {
        s->t = t;
    }
}

static void wh_scalar_src(pt_exec *ex, const pt_node *n, int a, wh_src *s) {
    memset(s, 0, sizeof *s);
    if (pk_is_none(ex, n, a)) return;
    s->present = true;
    s->f = pk_float(ex, n, a);
    s->i = ew_scalar_i64(ex, n, a);
}

/* Broadcast the shapes of every (unpinned) tensor source into (rank,
 * shape), then make each tensor's view; a pinned source repeats its one
 * element over the whole shape. */
static petrel_status wh_broadcast(pt_exec *ex, wh_src **srcs, int nsrc, int *rank,
                                  int64_t *shape) {
    *rank = 0;
    for (int k = 0; k < nsrc; k++) {
        const pt_tensor *t = srcs[k]->t;
        if (!t || srcs[k]->pinned) continue;
        int64_t tmp[PETREL_MAX_RANK];
        int r;
        if (!pt_broadcast_shape(*rank, shape, t->rank, t->shape, &r, tmp))
            return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
        *rank = r;
        memcpy(shape, tmp, sizeof(int64_t) * (size_t)r);
    }
    for (int k = 0; k < nsrc; k++) {
        wh_src *s = srcs[k];
        if (!s->t) continue;
        if (s->pinned) {
            s->view = *s->t;
            s->view.rank = *rank;
            for (int d = 0; d < *rank; d++) {
                s->view.shape[d] = shape[d];
                s->view.stride[d] = 0;
            }
        } else if (!pt_broadcast_to(s->t, *rank, shape, &s->view)) {
            return pk_fail(ex, PETREL_ERR_SHAPE, "shapes of the operands do not broadcast");
        }
    }
    return PETREL_OK;
}

static void wh_add(pcu_ew *it, const wh_src *s) {
    if (s->t) pcu_ew_tensor(it, &s->view);
    else pcu_ew_scalar(it, PETREL_DTYPE_F64, s->f, s->i);
}

/* Allocate the output over the broadcast shape of the three sources and
 * start its iterator; *ct is the type values travel in. */
static petrel_status wh_prepare(pt_exec *ex, const pt_node *n, wh_src *s0, wh_src *s1, wh_src *s2,
                                bool bool_as_float, pcu_ew *it, int *ct) {
    wh_src *srcs[3] = {s0, s1, s2};
    int rank;
    int64_t shape[PETREL_MAX_RANK] = {0};
    PT_TRY(wh_broadcast(ex, srcs, 3, &rank, shape));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    petrel_dtype odt = out->dtype;
    if (odt == PETREL_DTYPE_F64 || (bool_as_float && odt == PETREL_DTYPE_BOOL)) *ct = PCU_CT_F64;
    else *ct = ew_is_float(odt) ? PCU_CT_F32 : PCU_CT_I64;
    pcu_ew_begin(it, out);
    for (int k = 0; k < 3; k++) wh_add(it, srcs[k]);
    pcu_ew_end(it);
    return PETREL_OK;
}

/* out = cond ? a : b.  `cond` is any tensor read for truthiness. */
static petrel_status wh_select(pt_exec *ex, const pt_node *n, wh_src *cond, wh_src *a, wh_src *b) {
    pcu_ew it;
    int ct;
    PT_TRY(wh_prepare(ex, n, cond, a, b, true, &it, &ct));
    if (it.numel == 0) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_launch_where(&it, ct, pcu_stream(ex)), "where kernel");
    return PETREL_OK;
}

/* Clamp x into [lo, hi] (either bound may be absent). */
static petrel_status wh_clamp(pt_exec *ex, const pt_node *n, wh_src *x, wh_src *lo, wh_src *hi) {
    pcu_ew it;
    int ct;
    PT_TRY(wh_prepare(ex, n, x, lo, hi, false, &it, &ct));
    if (it.numel == 0) return PETREL_OK;
    pcu_clamp_params p = {.lo = lo->present, .hi = hi->present, .lo_tensor = lo->tensor,
                          .hi_tensor = hi->tensor};
    PCU_LAUNCHED(ex, pcu_launch_clamp(&it, ct, &p, pcu_stream(ex)), "clamp kernel");
    return PETREL_OK;
}

/*
** cuda_k_where -- every op of the "where" family in ops.def, as cpu_k_where
** computes it: where.self / ScalarOther / ScalarSelf / Scalar, masked_fill
** (Scalar or one-element Tensor value), clamp (Scalar? or Tensor? bounds),
** clamp_min, clamp_max and hardtanh.  Fails on shapes that do not
** broadcast or a masked_fill value tensor with more than one element.
*/
petrel_status cuda_k_where(pt_exec *ex, const pt_node *n) {
    wh_src a, b, c;
    switch (n->op) {
    case PETREL_OP_WHERE_SELF:
        wh_tensor_src(ex, n, 0, &c);
        wh_tensor_src(ex, n, 1, &a);
        wh_tensor_src(ex, n, 2, &b);
        break;
    case PETREL_OP_WHERE_SCALAROTHER:
        wh_tensor_src(ex, n, 0, &c);
        wh_tensor_src(ex, n, 1, &a);
        wh_scalar_src(ex, n, 2, &b);
        break;
    case PETREL_OP_WHERE_SCALARSELF:
        wh_tensor_src(ex, n, 0, &c);
        wh_scalar_src(ex, n, 1, &a);
        wh_tensor_src(ex, n, 2, &b);
        break;
    case PETREL_OP_WHERE_SCALAR:
        wh_tensor_src(ex, n, 0, &c);
        wh_scalar_src(ex, n, 1, &a);
        wh_scalar_src(ex, n, 2, &b);
        break;
    case PETREL_OP_MASKED_FILL_SCALAR:
    case PETREL_OP_MASKED_FILL__SCALAR:
    case PETREL_OP_MASKED_FILL_TENSOR:
        /* masked_fill(self, mask, value) == where(mask, value, self) */
        wh_tensor_src(ex, n, 1, &c);
        wh_tensor_src(ex, n, 0, &b);
        if (n->op == PETREL_OP_MASKED_FILL_TENSOR) {
            wh_tensor_src(ex, n, 2, &a);
            if (!a.present || (a.t && pt_numel(a.t) != 1))
                return pk_fail(ex, PETREL_ERR_RUNTIME,
                               "masked_fill only supports a 0-dimensional value tensor");
            a.pinned = true; /* its single value cannot widen the shape */
        } else {
            wh_scalar_src(ex, n, 2, &a);
        }
        break;
    case PETREL_OP_CLAMP:
    case PETREL_OP_CLAMP_:
    case PETREL_OP_HARDTANH:
    case PETREL_OP_HARDTANH_:
        wh_tensor_src(ex, n, 0, &a);
        wh_scalar_src(ex, n, 1, &b);
        wh_scalar_src(ex, n, 2, &c);
        break;
    case PETREL_OP_CLAMP_TENSOR:
        wh_tensor_src(ex, n, 0, &a);
        wh_tensor_src(ex, n, 1, &b);
        wh_tensor_src(ex, n, 2, &c);
        break;
    case PETREL_OP_CLAMP_MIN:
        wh_tensor_src(ex, n, 0, &a);
        wh_scalar_src(ex, n, 1, &b);
        memset(&c, 0, sizeof c);
        break;
    case PETREL_OP_CLAMP_MAX:
        wh_tensor_src(ex, n, 0, &a);
        memset(&b, 0, sizeof b);
        wh_scalar_src(ex, n, 1, &c);
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
