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

#endif /* PETREL_CPU_MATMUL_PLAN_H */
