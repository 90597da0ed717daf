/*
** fused.c -- CUDA kernels for the fused ops the compiler makes
** (src/compiler/fuse.c): petrel.rms_norm, petrel.rope,
** petrel.sdpa_cache and petrel.rope_table, for f32 / f16 / bf16 (the
** rotary tables also f64).  Their meaning, rounding points
** included, is written next to their ops.def entries; the CPU reference
** (cpu/ops/fused.c) is the oracle.  Part of the CUDA backend.
**
** petrel.rms_norm runs on the norm family's row kernel (norm_k.h), the
** attention of petrel.sdpa_cache on the shared attention kernels (sdpa_k.h:
** for decode, split over the cache length within a thread block cluster,
** GQA heads sharing each K/V read, masked keys skipped, the cache write
** folded in); rope, the general cache write and the rotary tables (one
** launch for cos and sin) are fused_k.cu.
** sdpa_cache's own rope (rope_cos/rope_sin) and q/k norm (qk_norm) are
** applied by the decode launch as it loads q and the new k; elsewhere the
** norm and rope kernels write them into scratch first.
*/
#include <math.h>

#include "../../cpu/ops/rope_table_plan.h"
#include "../cuda.h"
#include "fused_k.h"
#include "norm_k.h"
#include "sdpa_k.h"

static bool fused_float(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F32 || dt == PETREL_DTYPE_F16 || dt == PETREL_DTYPE_BF16;
}

/* t itself when dense, else a dense copy of it in device scratch (*out). */
static petrel_status fused_dense(pt_exec *ex, const pt_tensor *t, pt_tensor *out) {
    *out = *t;
    if (pt_is_contiguous(t)) return PETREL_OK;
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
        out->stride[i] = s;
        s *= t->shape[i] > 1 ? t->shape[i] : 1;
    }
    out->data = pk_dev_scratch(ex, (size_t)s * pt_elsize(t));
    if (!out->data) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a fused-op operand");
    return pcu_copy_into(ex, out, t);
}

/* ---- petrel.rms_norm ----------------------------------------------------- */

static petrel_status fused_rms_norm(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0), *w = pk_tensor(ex, n, 1);
    if (!x || x->rank < 1) return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm needs an input of rank >= 1");
    if (!pt_dtype_is_float(x->dtype)) return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm needs a float input");
    int norm_dt = pk_dtype(ex, n, 4); /* -1: n stays in float */
    if (norm_dt >= 0 && !pt_dtype_is_float((petrel_dtype)norm_dt))
        return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm norm_dtype must be a float dtype");
    int64_t D = x->shape[x->rank - 1], M = D > 0 ? pt_numel(x) / D : 0;
    if (w && (w->rank != 1 || w->shape[0] != D))
        return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm weight must have shape (%lld)", (long long)D);
    if (!fused_float(x->dtype) || (w && (!fused_float(w->dtype) || pcu_is_host_scalar(w))))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA rms_norm needs f32/f16/bf16 tensors");
    if (M > INT32_MAX) return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "more than 2^31 rows to normalize");
    pt_tensor xd, wd;
    PT_TRY(fused_dense(ex, x, &xd));
    if (w) PT_TRY(fused_dense(ex, w, &wd));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    pcu_rownorm a = {.x = xd.data, .xdt = xd.dtype, .out = out->data, .odt = out->dtype, .M = M, .D = D,
                     .w = w ? wd.data : NULL, .wdt = w ? wd.dtype : PETREL_DTYPE_F32, .eps = (float)pk_float(ex, n, 2),
                     .rms = true, .add_one = pk_bool(ex, n, 3), .norm_dtype = norm_dt};
    PCU_LAUNCHED(ex, pcu_rownorm_launch(pcu_stream(ex), &a), "rms_norm");
    return PETREL_OK;
}

/* ---- petrel.rope ---------------------------------------------------------- */

/* petrel.rope of x with cos and sin into out (dense, x's shape, dtype
 * odt); `what` names the operand in messages. */
static petrel_status rope_into(pt_exec *ex, const pt_tensor *x, const pt_tensor *c, const pt_tensor *s,
                               petrel_dtype odt, void *out, const char *what) {
    if (!x || !c || !s || x->rank < 1 || c->rank < 1 || s->rank < 1 || c->rank > x->rank || s->rank > x->rank)
        return pk_fail(ex, PETREL_ERR_SHAPE, "rope needs %s (..., D) and cos, sin (..., R) of no higher rank", what);
    int r = x->rank;
    int64_t D = x->shape[r - 1], R = c->shape[c->rank - 1];
    if (R % 2 != 0 || R > D || s->shape[s->rank - 1] != R)
        return pk_fail(ex, PETREL_ERR_SHAPE, "rope: cos and sin must share an even last dim R <= D (R = %lld, D = %lld)",
                       (long long)R, (long long)D);
    /* cos and sin viewed at the shape of x[..., :R] */
    int64_t rshape[PETREL_MAX_RANK];
    for (int i = 0; i < r; i++) rshape[i] = i == r - 1 ? R : x->shape[i];
    pt_tensor cb, sb;
    if (!pt_broadcast_to(c, r, rshape, &cb) || !pt_broadcast_to(s, r, rshape, &sb))
        return pk_fail(ex, PETREL_ERR_SHAPE, "rope: cos/sin do not broadcast against %s", what);
    if (!fused_float(x->dtype) || !fused_float(c->dtype) || !fused_float(s->dtype) || !fused_float(odt) ||
        pcu_is_host_scalar(c) || pcu_is_host_scalar(s))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA rope needs f32/f16/bf16 tensors");
    if (pt_numel(x) == 0) return PETREL_OK;
    pcu_rope a = {.x = x->data, .cos = cb.data, .sin = sb.data, .xdt = x->dtype, .cdt = cb.dtype, .sdt = sb.dtype,
                  .odt = odt, .out = out, .rank = r, .R = R};
    for (int i = 0; i < r; i++) {
        a.shape[i] = x->shape[i];
        a.xs[i] = x->stride[i], a.cs[i] = cb.stride[i], a.ss[i] = sb.stride[i];
    }
    PCU_LAUNCHED(ex, pcu_rope_launch(pcu_stream(ex), &a), "rope");
    return PETREL_OK;
}

static petrel_status fused_rope(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x || x->rank < 1) return pk_fail(ex, PETREL_ERR_SHAPE, "rope needs x (..., D)");
    if (pk_bool(ex, n, 3)) /* the partitioner keeps these on the CPU (caps.c) */
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA rope is rotate-half only (interleaved=True runs on the CPU)");
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    return rope_into(ex, x, pk_tensor(ex, n, 1), pk_tensor(ex, n, 2), out->dtype, out->data, "x");
}

/* sdpa_cache's rope_cos/rope_sin: q or k rotated into dense device
 * scratch (its own dtype), *rot describing it. */
static petrel_status rope_scratch(pt_exec *ex, const pt_tensor *x, const pt_tensor *c, const pt_tensor *s,
                                  pt_tensor *rot, const char *what) {
    *rot = *x;
    rot->storage = NULL;
    int64_t st = 1;
    for (int i = x->rank - 1; i >= 0; i--) rot->stride[i] = st, st *= x->shape[i];
    rot->data = pk_dev_scratch(ex, (size_t)pt_numel(x) * pt_elsize(x));
    if (!rot->data) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for sdpa_cache's rope");
    return rope_into(ex, x, c, s, x->dtype, rot->data, what);
}

/* sdpa_cache's qk_norm: x (q or the new k) normalized as petrel.rms_norm
 * over its last dim into dense device scratch of its dtype, *y
 * describing it. */
static petrel_status norm_scratch(pt_exec *ex, const pt_tensor *x, const pt_tensor *w, float eps, bool add_one,
                                  int norm_dt, pt_tensor *y) {
    pt_tensor xd, wd;
    PT_TRY(fused_dense(ex, x, &xd));
    PT_TRY(fused_dense(ex, w, &wd));
    *y = *x;
    y->storage = NULL;
    int64_t st = 1;
    for (int i = x->rank - 1; i >= 0; i--) y->stride[i] = st, st *= x->shape[i];
    y->data = pk_dev_scratch(ex, (size_t)pt_numel(x) * pt_elsize(x));
    if (!y->data) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for sdpa_cache's q/k norm");
    int64_t D = x->shape[x->rank - 1];
    pcu_rownorm a = {.x = xd.data, .xdt = xd.dtype, .out = y->data, .odt = x->dtype, .M = pt_numel(x) / D, .D = D,
                     .w = wd.data, .wdt = wd.dtype, .eps = eps, .rms = true, .add_one = add_one, .norm_dtype = norm_dt};
    PCU_LAUNCHED(ex, pcu_rownorm_launch(pcu_stream(ex), &a), "sdpa_cache q/k norm");
    return PETREL_OK;
}

/* ---- petrel.sdpa_cache ----------------------------------------------------- */

/* Do new entries src (B, H, L, E) fit cache (B, H, S, E)? */
static bool cache_fits(const pt_tensor *cache, const pt_tensor *src) {
    return src->shape[0] == cache->shape[0] && src->shape[1] == cache->shape[1] && src->shape[3] == cache->shape[3];
}

/* The decode launch's cache write: positions and the new rows. */
static void attn_cache_args(pcu_attn *a, const pt_tensor *pos, const pt_tensor *k, const pt_tensor *v) {
    a->pos = pos->data, a->pos_dt = pos->dtype, a->kn = k->data, a->vn = v->data, a->kn_dt = k->dtype,
    a->vn_dt = v->dtype, a->kn_se = k->stride[3], a->vn_se = v->stride[3];
    for (int i = 0; i < 2; i++) a->knb[i] = k->stride[i], a->vnb[i] = v->stride[i];
}

/* Hand sdpa_cache's rope to the decode launch (it rotates q and the new k
 * as it loads them) when it can: one cos / sin row of q's dtype per batch
 * index, shared by the heads (HF's (B, 1, L, R)).  False leaves a as it
 * was. */
static bool attn_rope(pcu_attn *a, const pt_tensor *q, const pt_tensor *c, const pt_tensor *s, const pt_tensor *pos,
                      const pt_tensor *k, const pt_tensor *v, int sm_count) {
    if (c->rank < 1 || s->rank < 1 || c->rank > 4 || s->rank > 4) return false;
    int64_t R = c->shape[c->rank - 1], shape[4] = {q->shape[0], q->shape[1], q->shape[2], R};
    pt_tensor cb, sb;
    if (s->shape[s->rank - 1] != R || !pt_broadcast_to(c, 4, shape, &cb) || !pt_broadcast_to(s, 4, shape, &sb))
        return false;
    if (cb.dtype != (petrel_dtype)a->dtype || sb.dtype != cb.dtype || pcu_is_host_scalar(c) || pcu_is_host_scalar(s) ||
        cb.stride[3] != 1 || sb.stride[3] != 1 || cb.stride[1] != 0 || sb.stride[1] != 0 ||
        cb.stride[0] != sb.stride[0] || q->shape[2] != 1)
        return false;
    pcu_attn t = *a;
    attn_cache_args(&t, pos, k, v);
    t.rcos = cb.data, t.rsin = sb.data, t.R = R, t.rcb[0] = cb.stride[0], t.rcb[1] = 0;
    if (!pcu_attn_rope_ok(&t, sm_count)) return false;
    a->rcos = t.rcos, a->rsin = t.rsin, a->R = R, a->rcb[0] = t.rcb[0], a->rcb[1] = 0;
    return true;
}

/*
** The cache write, then attention of q over the whole caches, with GQA and
** the mask mapped onto the shared attention kernels.  A decode step (one
** position) has the attention launch do the write too when it can
** (pcu_attn_writes_cache); otherwise the cache-write kernel (fused_k.cu)
** runs first.  Positions are read on the device only (the step may be
** replayed from a CUDA graph), so a position outside the cache cannot fail
** the call as on the CPU: its row is not written and the attention still
** runs.
*/
static petrel_status fused_sdpa_cache(pt_exec *ex, const pt_node *n) {
    const pt_tensor *q = pk_tensor(ex, n, 0), *k = pk_tensor(ex, n, 1), *v = pk_tensor(ex, n, 2);
    const pt_tensor *kc = pk_tensor(ex, n, 3), *vc = pk_tensor(ex, n, 4), *pos = pk_tensor(ex, n, 5);
    const pt_tensor *mask = pk_tensor(ex, n, 6), *rc = pk_tensor(ex, n, 9), *rs = pk_tensor(ex, n, 10);
    if (!rc != !rs) return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache: rope_cos and rope_sin go together");
    if (!q || !k || !v || !kc || !vc || !pos || q->rank != 4 || k->rank != 4 || v->rank != 4 || kc->rank != 4 ||
        vc->rank != 4 || pos->rank != 1)
        return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache needs 4-D q, k, v, caches and 1-D positions");
    int64_t B = q->shape[0], Hq = q->shape[1], L = q->shape[2], E = q->shape[3];
    int64_t Hkv = kc->shape[1], S = kc->shape[2], Ev = vc->shape[3];
    if (kc->shape[0] != B || vc->shape[0] != B || vc->shape[1] != Hkv || vc->shape[2] != S || kc->shape[3] != E ||
        Hkv <= 0 || Hq % Hkv != 0 || k->shape[2] != L || v->shape[2] != L || pos->shape[0] != L)
        return pk_fail(ex, PETREL_ERR_SHAPE,
                       "sdpa_cache shapes do not fit: q (%lld, %lld, %lld, %lld), cache (%lld, %lld, %lld, %lld), "
                       "%lld positions",
                       (long long)B, (long long)Hq, (long long)L, (long long)E, (long long)kc->shape[0],
                       (long long)Hkv, (long long)S, (long long)kc->shape[3], (long long)pos->shape[0]);
    if (!cache_fits(kc, k) || !cache_fits(vc, v))
        return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache: new keys or values do not match their cache's (B, H, ., E)");
    if (pt_dtype_is_float(pos->dtype) || pos->dtype == PETREL_DTYPE_BOOL)
        return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache positions must be integers");
    int64_t mshape[4] = {B, Hq, L, S};
    pt_tensor m;
    if (mask && !pt_broadcast_to(mask, 4, mshape, &m))
        return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache: attn_mask does not broadcast to (B, Hq, L, S)");
    const pt_tensor *qnw = NULL, *knw = NULL; /* qk_norm's weights */
    if (pk_bool(ex, n, 11)) {
        qnw = pk_tensor(ex, n, 12), knw = pk_tensor(ex, n, 13);
        if (!qnw || !knw || qnw->rank != 1 || knw->rank != 1 || qnw->shape[0] != E || knw->shape[0] != E)
            return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache: qk_norm needs q and k norm weights of shape (%lld)",
                           (long long)E);
        if (!fused_float(qnw->dtype) || !fused_float(knw->dtype) || pcu_is_host_scalar(qnw) || pcu_is_host_scalar(knw))
            return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA sdpa_cache needs f32/f16/bf16 q/k norm weights");
        int ndt = pk_dtype(ex, n, 16);
        if (ndt >= 0 && !fused_float((petrel_dtype)ndt))
            return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache norm_dtype must be f32, f16 or bf16");
    }
    petrel_dtype dt = pk_out_dtype(ex, n, 0);
    if (!fused_float(dt) || q->dtype != dt || kc->dtype != dt || vc->dtype != dt || !fused_float(k->dtype) ||
        !fused_float(v->dtype) || pcu_is_host_scalar(pos) ||
        (mask && (pcu_is_host_scalar(mask) || (!fused_float(mask->dtype) && mask->dtype != PETREL_DTYPE_BOOL))))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA sdpa_cache needs f32/f16/bf16 q and caches of one dtype");
    int64_t oshape[4] = {B, Hq, L, Ev};
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 4, oshape, &out));

    pcu_attn a = {.dtype = dt, .q = q->data, .k = kc->data, .v = vc->data, .out = out->data, .nb = 2,
                  .bshape = {B, Hq}, .qb = {q->stride[0], q->stride[1]}, .kb = {kc->stride[0], kc->stride[1]},
                  .vb = {vc->stride[0], vc->stride[1]}, .kdiv = Hq / Hkv, .vdiv = Hq / Hkv, .group = Hq / Hkv,
                  .L = L, .S = S, .E = E, .Ev = Ev, .q_sl = q->stride[2], .q_se = q->stride[3],
                  .k_ss = kc->stride[2], .k_se = kc->stride[3], .v_ss = vc->stride[2], .v_se = vc->stride[3],
                  .causal = pk_bool(ex, n, 8), .keys_below = pk_pos_bound(ex)};
    a.scale = (float)(pk_is_none(ex, n, 7) ? 1.0 / sqrt((double)E) : pk_float(ex, n, 7));
    if (mask) {
        a.mask = m.data, a.mask_dtype = m.dtype;
        a.mb[0] = m.stride[0], a.mb[1] = m.stride[1], a.m_sl = m.stride[2], a.m_ss = m.stride[3];
    }
    pcu_ctx *c = pk_cuda(ex);
    pt_tensor qn, kn; /* normalized q and k (qk_norm) */
    if (qnw) {
        float eps = (float)pk_float(ex, n, 14);
        bool add_one = pk_bool(ex, n, 15);
        int ndt = pk_dtype(ex, n, 16);
        /* the decode launch normalizes them as it rotates them */
        bool launch = rc && qnw->dtype == dt && knw->dtype == dt && qnw->stride[0] == 1 && knw->stride[0] == 1 &&
                      (ndt < 0 || ndt == (int)dt) && attn_rope(&a, q, rc, rs, pos, k, v, c->sm_count);
        if (launch) {
            a.qnw = qnw->data, a.knw = knw->data, a.neps = eps, a.nadd_one = add_one, a.nround = ndt >= 0;
        } else {
            PT_TRY(norm_scratch(ex, q, qnw, eps, add_one, ndt, &qn));
            PT_TRY(norm_scratch(ex, k, knw, eps, add_one, ndt, &kn));
            q = &qn, k = &kn;
            a.q = q->data, a.qb[0] = q->stride[0], a.qb[1] = q->stride[1], a.q_sl = q->stride[2], a.q_se = q->stride[3];
        }
    }
    pt_tensor qr, kr; /* rotated q and k (rope_cos/rope_sin given) */
    if (rc && !a.rcos && !attn_rope(&a, q, rc, rs, pos, k, v, c->sm_count)) { /* else the launch rotates them */
        PT_TRY(rope_scratch(ex, q, rc, rs, &qr, "q"));
        PT_TRY(rope_scratch(ex, k, rc, rs, &kr, "k"));
        q = &qr, k = &kr;
        a.q = q->data, a.qb[0] = q->stride[0], a.qb[1] = q->stride[1], a.q_sl = q->stride[2], a.q_se = q->stride[3];
    }
    if (!pcu_attn_fits(&a, c->sm_count))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED,
                       "CUDA attention supports value head dims up to %d and head dims up to about 1000 "
                       "(E = %lld, Ev = %lld)", PCU_ATTN_MAX_EV, (long long)E, (long long)Ev);
    size_t need = pcu_attn_scratch(&a, c->sm_count);
    void *scratch = need ? pk_dev_scratch(ex, need) : NULL;
    if (need && !scratch) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for attention");

    /* every check and allocation done: only now touch the state, so a
     * failing call leaves the caches as they were.  A decode step's
     * attention writes the new rows itself when it can (one launch). */
    attn_cache_args(&a, pos, k, v);
    if (pt_numel(out) > 0 && pcu_attn_writes_cache(&a, c->sm_count)) {
        PCU_LAUNCHED(ex, pcu_attn_launch(c->stream, &a, c->sm_count, scratch), "sdpa_cache attention");
        return PETREL_OK;
    }
    a.pos = NULL;
    pcu_cache_write w = {.kc = kc->data, .vc = vc->data, .kcdt = kc->dtype, .vcdt = vc->dtype, .k = k->data,
                         .v = v->data, .kdt = k->dtype, .vdt = v->dtype, .pos = pos->data, .pos_dt = pos->dtype,
                         .pos_s = pos->stride[0], .B = B, .H = Hkv, .L = L, .S = S, .E = E, .Ev = Ev};
    for (int i = 0; i < 4; i++) {
        w.kcs[i] = kc->stride[i], w.vcs[i] = vc->stride[i];
        w.ks[i] = k->stride[i], w.vs[i] = v->stride[i];
    }
    PCU_LAUNCHED(ex, pcu_cache_write_launch(c->stream, &w), "sdpa_cache write");
    if (pt_numel(out) == 0) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_attn_launch(c->stream, &a, c->sm_count, scratch), "sdpa_cache attention");
    return PETREL_OK;
}

/* ---- petrel.rope_table ------------------------------------------------------ */

static petrel_status fused_rope_table(pt_exec *ex, const pt_node *n) {
    rope_table_args t;
    PT_TRY(rope_table_args_of(ex, n, &t));
    pcu_rope_table a = {.inv = t.inv->data, .pos = t.pos->data, .inv_dt = t.inv->dtype, .pos_dt = t.pos->dtype,
                        .odt = t.cos->dtype, .inv_s = t.inv->stride[0], .pos_s = {t.pos->stride[0], t.pos->stride[1]},
                        .cos = t.cos->data, .sin = t.sin->data, .B = t.B, .L = t.L, .H = t.H, .scale = (float)t.scale};
    PCU_LAUNCHED(ex, pcu_rope_table_launch(pcu_stream(ex), &a), "rope_table");
    return PETREL_OK;
}

/*
** Kernel family "fused": the ops of the "fused ops" section of ops.def.
*/
petrel_status cuda_k_fused(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_PETREL_RMS_NORM: return fused_rms_norm(ex, n);
    case PETREL_OP_PETREL_ROPE: return fused_rope(ex, n);
    case PETREL_OP_PETREL_SDPA_CACHE: return fused_sdpa_cache(ex, n);
    case PETREL_OP_PETREL_ROPE_TABLE: return fused_rope_table(ex, n);
    default: return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a fused op", (int)n->op);
    }
}
