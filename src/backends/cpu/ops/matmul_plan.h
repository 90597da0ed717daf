/*
** matmul_plan.h -- the shape side of torch's matrix products, shared by
** the CPU reference (matmul.c) and the CUDA backend (cuda/ops/matmul.c):
** the batched-product plan with broadcast batch dims, and the transposed
** and unsqueezed views the op variants (mm, bmm, matmul, linear) reduce to.
*/
#ifndef PETREL_CPU_MATMUL_PLAN_H
#define PETREL_CPU_MATMUL_PLAN_H

#include <string.h>

#include "../../../runtime/kernel.h"

/* A batched product: a (batch..., M, K) @ b (batch..., K, N), both already
 * broadcast to the same batch shape (stride 0 where repeated). */
typedef struct mm_plan {
    int nb;                          /* number of batch dims */
    int64_t bshape[PETREL_MAX_RANK]; /* (batch...) */
    pt_tensor a;                     /* (batch..., M, K) */
    pt_tensor b;                     /* (batch..., K, N) */
    int64_t M, K, N;
} mm_plan;

/* Build a plan for a (..., M, K) @ b (..., K, N) with broadcast batch dims
 * (both operands must have rank >= 2). */
static inline petrel_status mm_plan_make(pt_exec *ex, const pt_tensor *a, const pt_tensor *b,
                                         mm_plan *p) {
    if (a->rank < 2 || b->rank < 2)
        return pk_fail(ex, PETREL_ERR_SHAPE, "matrix product needs rank >= 2 operands");
    p->M = a->shape[a->rank - 2];
    p->K = a->shape[a->rank - 1];
    p->N = b->shape[b->rank - 1];
    if (b->shape[b->rank - 2] != p->K)
        return pk_fail(ex, PETREL_ERR_SHAPE,
                       "matrix shapes do not match: (%lld x %lld) @ (%lld x %lld)",
                       (long long)p->M, (long long)p->K, (long long)b->shape[b->rank - 2],
                       (long long)p->N);
    if (!pt_broadcast_shape(a->rank - 2, a->shape, b->rank - 2, b->shape, &p->nb, p->bshape))
        return pk_fail(ex, PETREL_ERR_SHAPE, "matrix product batch dims do not broadcast");
    if (p->nb + 2 > PETREL_MAX_RANK)
        return pk_fail(ex, PETREL_ERR_SHAPE, "matrix product rank too large");
    int64_t sa[PETREL_MAX_RANK], sb[PETREL_MAX_RANK];
    memcpy(sa, p->bshape, sizeof(int64_t) * (size_t)p->nb);
    memcpy(sb, p->bshape, sizeof(int64_t) * (size_t)p->nb);
    sa[p->nb] = p->M, sa[p->nb + 1] = p->K;
    sb[p->nb] = p->K, sb[p->nb + 1] = p->N;
    if (!pt_broadcast_to(a, p->nb + 2, sa, &p->a) || !pt_broadcast_to(b, p->nb + 2, sb, &p->b))
        return pk_fail(ex, PETREL_ERR_SHAPE, "matrix product batch dims do not broadcast");
    return PETREL_OK;
}

/* A transposed view of the last two dims (no copy). */
static inline pt_tensor mm_transposed(const pt_tensor *t) {
    pt_tensor r = *t;
    int a = t->rank - 2, b = t->rank - 1;
    r.shape[a] = t->shape[b], r.shape[b] = t->shape[a];
    r.stride[a] = t->stride[b], r.stride[b] = t->stride[a];
    return r;
}

/* A view of `t` with a size-1 dim inserted at position `at`. */
static inline pt_tensor mm_unsqueezed(const pt_tensor *t, int at) {
    pt_tensor r = *t;
    r.rank = t->rank + 1;
    for (int i = t->rank; i > at; i--) r.shape[i] = t->shape[i - 1], r.stride[i] = t->stride[i - 1];
    r.shape[at] = 1;
    r.stride[at] = 1;
    return r;
}

/* The operands of mm, bmm, addmm, baddbmm, matmul and linear as one
 * product alpha * (a @ b) + beta * self (self NULL: none; linear's weight
 * already transposed into b_view). */
typedef struct mm_args {
    const pt_tensor *a, *b, *self;
    pt_tensor b_view;
    double alpha, beta;
} mm_args;

static inline petrel_status mm_args_of(pt_exec *ex, const pt_node *n, mm_args *o) {
    *o = (mm_args){.alpha = 1.0};
    switch (n->op) {
    case PETREL_OP_MM:
    case PETREL_OP_BMM:
    case PETREL_OP_ADDMM:
    case PETREL_OP_BADDBMM: {
        bool add = n->op == PETREL_OP_ADDMM || n->op == PETREL_OP_BADDBMM;
        int want = (n->op == PETREL_OP_MM || n->op == PETREL_OP_ADDMM) ? 2 : 3;
        o->a = pk_tensor(ex, n, add ? 1 : 0);
        o->b = pk_tensor(ex, n, add ? 2 : 1);
        if (!o->a || !o->b || o->a->rank != want || o->b->rank != want)
            return pk_fail(ex, PETREL_ERR_SHAPE, "expected %d-D operands", want);
        if (want == 3 && o->a->shape[0] != o->b->shape[0])
            return pk_fail(ex, PETREL_ERR_SHAPE, "batch sizes differ: %lld vs %lld", (long long)o->a->shape[0],
                           (long long)o->b->shape[0]);
        if (!add) return PETREL_OK;
        if (!(o->self = pk_tensor(ex, n, 0))) return pk_fail(ex, PETREL_ERR_SHAPE, "self is None");
        o->beta = pk_float(ex, n, 3);
        o->alpha = pk_float(ex, n, 4);
        return PETREL_OK;
    }
    case PETREL_OP_MATMUL:
        o->a = pk_tensor(ex, n, 0), o->b = pk_tensor(ex, n, 1);
        return o->a && o->b ? PETREL_OK : pk_fail(ex, PETREL_ERR_SHAPE, "matmul operand is None");
    case PETREL_OP_LINEAR: {
        /* input (..., in) @ weight(out, in)^T + bias(out) */
        const pt_tensor *w = pk_tensor(ex, n, 1);
        o->a = pk_tensor(ex, n, 0);
        if (!o->a || !w || w->rank < 1 || w->rank > 2)
            return pk_fail(ex, PETREL_ERR_SHAPE, "linear weight must be 1-D or 2-D");
        o->b_view = w->rank == 2 ? mm_transposed(w) : *w; /* (in, out) */
        o->b = &o->b_view;
        o->self = pk_tensor(ex, n, 2);
        o->beta = 1.0;
        return PETREL_OK;
    }
    default: return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a plain matrix product", (int)n->op);
    }
}

/* petrel.gated_linear's activation: "silu", "gelu", "gelu_tanh"; -1 for
 * anything else (the numbering of the CUDA GEMV's PCU_ACT_*). */
enum { MM_ACT_SILU, MM_ACT_GELU, MM_ACT_GELU_TANH };
static inline int mm_act_id(const char *a) {
    return !a ? -1 : !strcmp(a, "silu") ? MM_ACT_SILU : !strcmp(a, "gelu") ? MM_ACT_GELU
                   : !strcmp(a, "gelu_tanh") ? MM_ACT_GELU_TANH : -1;
}

/* The stride between consecutive rows of t viewed as (rows, last dim),
 * its leading dims flattened; false when they do not flatten to one
 * stride (how a linear's input and addend are read as rows). */
static inline bool mm_row_stride(const pt_tensor *t, int64_t *rs) {
    int64_t expect = -1; /* stride the next outer dim must have; -1 = none yet */
    *rs = 0;
    for (int i = t->rank - 2; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (expect < 0) *rs = t->stride[i];
        else if (t->stride[i] != expect) return false;
        expect = t->stride[i] * t->shape[i];
    }
    return true;
}

/* petrel.expert_linear's operands x (T, K) float, weight (E, N, K), ids
 * (T) integers, checked (both backends' messages). */
static inline petrel_status mm_expert_operands(pt_exec *ex, const pt_node *n, const pt_tensor **x,
                                               const pt_tensor **w, const pt_tensor **ids) {
    const char *op = "expert_linear";
    *x = pk_tensor(ex, n, 0), *w = pk_tensor(ex, n, 1), *ids = pk_tensor(ex, n, 2);
    const pt_tensor *xt = *x, *wt = *w, *it = *ids;
    if (!xt || !wt || !it || xt->rank != 2 || wt->rank != 3 || it->rank != 1 || xt->shape[1] != wt->shape[2] ||
        it->shape[0] != xt->shape[0] || !pt_dtype_is_float(xt->dtype))
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s expects x (T, K) float, weight (E, N, K), ids (T)", op);
    if (pt_dtype_is_float(it->dtype) || it->dtype == PETREL_DTYPE_BOOL)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: ids must be integers", op);
    return PETREL_OK;
}

#endif /* PETREL_CPU_MATMUL_PLAN_H */
