/*
** sdpa.c -- CUDA kernel for scaled_dot_product_attention, for f32 / f16 /
** bf16: boolean or additive masks (broadcast), top-left aligned causal
** masking, scale, grouped-query attention (enable_gqa: query head h reads
** key/value head h / (Hq / Hkv)) and broadcasting of leading batch dims,
** with the CPU reference's shape rules (cpu/ops/sdpa.c).  A fully masked
** row gives zeros; dropout_p must be 0.  Part of the CUDA backend.
**
** The host maps every operand onto the output's batch dims (a stride per
** dim, 0 where it broadcasts) and launches the shared attention kernel
** (sdpa_k.cu), which petrel.sdpa_cache uses as well.
*/
#include <math.h>

#include "../cuda.h"
#include "sdpa_k.h"

/* An operand (batch..., rows, cols). */
typedef struct sdpa_operand {
    const pt_tensor *t;
    int nb; /* its batch dims (rank - 2) */
} sdpa_operand;

/* The operand's stride for each of the nb output batch dims (aligned from
 * the right; 0 where it broadcasts) and its head divisor: under GQA its
 * head dim (the last batch dim) of size sz < hq serves hq / sz query heads. */
static void sdpa_map(const sdpa_operand *o, int nb, bool gqa, int64_t hq, int64_t *stride, int64_t *div) {
    *div = 1;
    for (int d = 0; d < nb; d++) {
        int j = d - (nb - o->nb);
        int64_t sz = j >= 0 ? o->t->shape[j] : 1;
        stride[d] = sz == 1 ? 0 : o->t->stride[j];
        if (gqa && j == o->nb - 1 && sz != 1 && sz != hq) *div = hq / sz;
    }
}

/* Check an operand's batch dim sizes against the output batch shape. */
static bool sdpa_fits(const sdpa_operand *o, const int64_t *bshape, int nb, bool gqa, int64_t hq) {
    for (int j = 0; j < o->nb; j++) {
        int64_t sz = o->t->shape[j], want = bshape[nb - o->nb + j];
        if (sz == 1 || sz == want) continue;
        if (gqa && j == o->nb - 1 && sz > 0 && want % sz == 0 && want == hq) continue;
        return false;
    }
    return true;
}

static bool sdpa_float_dtype(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F32 || dt == PETREL_DTYPE_F16 || dt == PETREL_DTYPE_BF16;
}

/* Enqueue the attention described by `a` (its output already allocated). */
static petrel_status sdpa_launch(pt_exec *ex, const pcu_attn *a) {
    pcu_ctx *c = pk_cuda(ex);
    size_t need = pcu_attn_scratch(a, c->sm_count);
    void *scratch = need ? pk_dev_scratch(ex, need) : NULL;
    if (need && !scratch) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for attention");
    PCU_LAUNCHED(ex, pcu_attn_launch(c->stream, a, c->sm_count, scratch), "attention");
    return PETREL_OK;
}

/*
** Kernel family "sdpa": scaled_dot_product_attention with
**   query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev)
** attn_mask (broadcastable to (..., L, S)): bool keeps where True, any other
** dtype is added to the scores.  scale defaults to 1/sqrt(E).
*/
petrel_status cuda_k_sdpa(pt_exec *ex, const pt_node *n) {
    if (n->op != PETREL_OP_SDPA) return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not attention", (int)n->op);
    const pt_tensor *q = pk_tensor(ex, n, 0), *k = pk_tensor(ex, n, 1), *v = pk_tensor(ex, n, 2);
    const pt_tensor *mask = pk_tensor(ex, n, 3);
    if (!q || !k || !v || q->rank < 2 || k->rank < 2 || v->rank < 2)
        return pk_fail(ex, PETREL_ERR_SHAPE, "attention operands must be at least 2-D");
    if (pk_float(ex, n, 4) != 0.0)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED,
                       "attention dropout (dropout_p = %g) is not supported; export in eval mode", pk_float(ex, n, 4));
    bool causal = pk_bool(ex, n, 5), gqa = pk_bool(ex, n, 7);
    sdpa_operand oq = {q, q->rank - 2}, ok = {k, k->rank - 2}, ov = {v, v->rank - 2};
    int64_t L = q->shape[q->rank - 2], E = q->shape[q->rank - 1];
    int64_t S = k->shape[k->rank - 2], Ev = v->shape[v->rank - 1];
    if (k->shape[k->rank - 1] != E || v->shape[v->rank - 2] != S)
        return pk_fail(ex, PETREL_ERR_SHAPE,
                       "attention shapes do not match: q (.., %lld, %lld), k (.., %lld, %lld), v (.., %lld, %lld)",
                       (long long)L, (long long)E, (long long)S, (long long)k->shape[k->rank - 1],
                       (long long)v->shape[v->rank - 2], (long long)Ev);
    double scale = pk_is_none(ex, n, 6) ? 1.0 / sqrt((double)E) : pk_float(ex, n, 6);

    /* output batch shape: q's batch broadcast with k's and v's, where under
     * GQA the key/value head dim counts as the query head count */
    int nb = oq.nb > ok.nb ? oq.nb : ok.nb;
    if (ov.nb > nb) nb = ov.nb;
    if (nb > PCU_ATTN_MAX_BATCH) return pk_fail(ex, PETREL_ERR_SHAPE, "attention rank too large");
    int64_t hq = oq.nb >= 1 ? q->shape[oq.nb - 1] : 1;
    if (gqa && oq.nb < 1) return pk_fail(ex, PETREL_ERR_SHAPE, "enable_gqa needs a head dim (rank >= 3)");
    int64_t bshape[PETREL_MAX_RANK];
    for (int d = 0; d < nb; d++) {
        bshape[d] = 1;
        const sdpa_operand *ops[3] = {&oq, &ok, &ov};
        for (int t = 0; t < 3; t++) {
            int j = d - (nb - ops[t]->nb);
            if (j < 0) continue;
            int64_t sz = ops[t]->t->shape[j];
            if (gqa && t > 0 && j == ops[t]->nb - 1 && d == nb - 1) sz = hq;
            if (sz != 1) bshape[d] = sz;
        }
    }
    if (!sdpa_fits(&oq, bshape, nb, false, hq) || !sdpa_fits(&ok, bshape, nb, gqa, hq) ||
        !sdpa_fits(&ov, bshape, nb, gqa, hq))
        return pk_fail(ex, PETREL_ERR_SHAPE, "attention batch/head dims do not broadcast");

    pt_tensor m;
    int64_t mshape[PETREL_MAX_RANK];
    for (int d = 0; d < nb; d++) mshape[d] = bshape[d];
    mshape[nb] = L, mshape[nb + 1] = S;
    if (mask && !pt_broadcast_to(mask, nb + 2, mshape, &m))
        return pk_fail(ex, PETREL_ERR_SHAPE, "attn_mask does not broadcast to (..., L, S)");
    petrel_dtype dt = pk_out_dtype(ex, n, 0);
    if (!sdpa_float_dtype(dt) || q->dtype != dt || k->dtype != dt || v->dtype != dt ||
        (mask && (pcu_is_host_scalar(mask) || (!sdpa_float_dtype(mask->dtype) && mask->dtype != PETREL_DTYPE_BOOL))))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA attention needs f32/f16/bf16 q, k, v of one dtype");

    int64_t oshape[PETREL_MAX_RANK];
    for (int d = 0; d < nb; d++) oshape[d] = bshape[d];
    oshape[nb] = L, oshape[nb + 1] = Ev;
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, nb + 2, oshape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;

    pcu_attn a = {.dtype = dt, .q = q->data, .k = k->data, .v = v->data, .out = out->data, .nb = nb,
                  .L = L, .S = S, .E = E, .Ev = Ev, .causal = causal, .scale = (float)scale};
    int64_t qdiv;
    for (int d = 0; d < nb; d++) a.bshape[d] = bshape[d];
    sdpa_map(&oq, nb, false, hq, a.qb, &qdiv);
    sdpa_map(&ok, nb, gqa, hq, a.kb, &a.kdiv);
    sdpa_map(&ov, nb, gqa, hq, a.vb, &a.vdiv);
    a.group = a.kdiv == a.vdiv ? a.kdiv : 1;
    a.q_sl = q->stride[q->rank - 2], a.q_se = q->stride[q->rank - 1];
    a.k_ss = k->stride[k->rank - 2], a.k_se = k->stride[k->rank - 1];
    a.v_ss = v->stride[v->rank - 2], a.v_se = v->stride[v->rank - 1];
    if (mask) {
        a.mask = m.data, a.mask_dtype = m.dtype;
        for (int d = 0; d < nb; d++) a.mb[d] = m.stride[d];
        a.m_sl = m.stride[nb], a.m_ss = m.stride[nb + 1];
    }
    if (!pcu_attn_fits(&a, pk_cuda(ex)->sm_count))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED,
                       "CUDA attention supports value head dims up to %d and head dims up to about 1000 "
                       "(E = %lld, Ev = %lld)", PCU_ATTN_MAX_EV, (long long)E, (long long)Ev);
    return sdpa_launch(ex, &a);
}
