/*
** fused.c -- CPU reference kernels for the fused ops the compiler makes
** (src/compiler/fuse.c): petrel.rms_norm, petrel.rope,
** petrel.sdpa_cache and petrel.rope_table, and the RMSNorm prologue of the
** fused linears
** (cpu_rms_norm_prologue, for matmul.c and quant.c).  Their meaning is
** written down next to their ops.def entries; these loops are its
** executable form and the oracle for other backends.  Computed in double,
** rounded at the points ops.def names; sdpa_cache's attention takes the
** float path of sdpa.c (nu_fa_run) where it can, these loops otherwise.
** Part of the CPU backend.
*/
#include <math.h>

#include "nn_util.h"
#include "rope_table_plan.h"

/* v rounded to dtype dt (the value a tensor of that dtype would hold). */
static double round_to(double v, petrel_dtype dt) {
    uint64_t tmp;
    pt_store_f64(&tmp, dt, v);
    return pt_load_f64(&tmp, dt);
}

/* ---- petrel.rms_norm ----------------------------------------------------- */

/* Rows [m0, m1) of rms_norm_rows' output (threads take whole rows). */
typedef struct rms_job {
    const double *xd, *wd;
    double eps;
    int64_t D;
    int norm_dt;
    const pt_tensor *out;
} rms_job;

static void rms_rows(void *ctx, int part, int64_t m0, int64_t m1) {
    (void)part;
    const rms_job *jb = ctx;
    int64_t D = jb->D, es = (int64_t)pt_elsize(jb->out);
    for (int64_t m = m0; m < m1; m++) {
        const double *row = jb->xd + m * D;
        double ss = 0.0;
        for (int64_t d = 0; d < D; d++) ss += row[d] * row[d];
        double r = 1.0 / sqrt(ss / (double)D + jb->eps);
        for (int64_t d = 0; d < D; d++) {
            double v = row[d] * r;
            if (jb->norm_dt >= 0) v = round_to(v, (petrel_dtype)jb->norm_dt);
            if (jb->wd) v *= jb->wd[d];
            pt_store_f64(jb->out->data + (m * D + d) * es, jb->out->dtype, v);
        }
    }
}

/* out (x's shape, dense) = petrel.rms_norm(x, w, eps, add_one, norm_dt)
 * (norm_dt -1: n stays in float). */
static petrel_status rms_norm_rows(pt_exec *ex, const pt_tensor *w, double eps, bool add_one, int norm_dt,
                                   const pt_tensor *x, const pt_tensor *out) {
    if (norm_dt >= 0 && !pt_dtype_is_float((petrel_dtype)norm_dt))
        return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm norm_dtype must be a float dtype");
    int64_t D = x->shape[x->rank - 1], M = D > 0 ? pt_numel(x) / D : 0;
    double *wd = NULL; /* (D) */
    if (w) {
        if (w->rank != 1 || w->shape[0] != D)
            return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm weight must have shape (%lld)", (long long)D);
        if (!(wd = nu_load_f64(ex, w))) return NU_NOMEM(ex);
        for (int64_t d = 0; d < D && add_one; d++) wd[d] += 1.0;
    }
    double *xd = nu_load_f64(ex, x); /* (M, D) row-major */
    if (!xd) return NU_NOMEM(ex);
    rms_job jb = {.xd = xd, .wd = wd, .eps = eps, .D = D, .norm_dt = norm_dt, .out = out};
    pk_parallel(ex, M, pt_pool_min_items(2 * D), rms_rows, &jb); /* rows are independent */
    return PETREL_OK;
}

/* The same with weight, eps, add_one and norm_dtype read from node n's
 * arguments a .. a + 3: the op itself (a = 1) and the prologue of the
 * fused linears share this. */
static petrel_status rms_norm_node(pt_exec *ex, const pt_node *n, int a, const pt_tensor *x, const pt_tensor *out) {
    return rms_norm_rows(ex, pk_tensor(ex, n, a), pk_float(ex, n, a + 1), pk_bool(ex, n, a + 2),
                         pk_dtype(ex, n, a + 3), x, out);
}

/* Dense scratch of x's shape and dtype in *y. */
static petrel_status dense_scratch(pt_exec *ex, const pt_tensor *x, pt_tensor *y) {
    memset(y, 0, sizeof *y);
    y->dtype = x->dtype;
    y->rank = x->rank;
    memcpy(y->shape, x->shape, sizeof y->shape);
    nu_contig_strides(y->rank, y->shape, y->stride);
    if (!(y->data = (uint8_t *)nu_scratch(ex, pt_numel(x), pt_elsize(x)))) return NU_NOMEM(ex);
    return PETREL_OK;
}

static petrel_status fused_rms_norm(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x || x->rank < 1) return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm needs an input of rank >= 1");
    if (!pt_dtype_is_float(x->dtype)) return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm needs a float input");
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    return rms_norm_node(ex, n, 1, x, out);
}

petrel_status cpu_rms_norm_prologue(pt_exec *ex, const pt_node *n, int a, const pt_tensor *x, pt_tensor *xn) {
    if (!pk_bool(ex, n, a)) {
        *xn = *x;
        return PETREL_OK;
    }
    if (x->rank < 1 || !pt_dtype_is_float(x->dtype))
        return pk_fail(ex, PETREL_ERR_SHAPE, "the rms_norm prologue needs a float input of rank >= 1");
    PT_TRY(dense_scratch(ex, x, xn));
    return rms_norm_node(ex, n, a + 1, x, xn);
}

/* ---- petrel.rope ---------------------------------------------------------- */

/* cos and sin (..., R) viewed at the shape of x[..., :R] in *cb, *sb;
 * fails the node, the message starting with `what`, when they do not fit
 * x (..., D). */
static petrel_status rope_operands(pt_exec *ex, const char *what, const pt_tensor *x, const pt_tensor *c,
                                   const pt_tensor *s, pt_tensor *cb, pt_tensor *sb) {
    if (!x || !c || !s || x->rank < 1 || c->rank < 1 || s->rank < 1 || c->rank > x->rank || s->rank > x->rank)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s needs x (..., D) and cos, sin (..., R) of no higher rank", what);
    int r = x->rank;
    int64_t D = x->shape[r - 1], R = c->shape[c->rank - 1];
    if (R % 2 != 0 || R > D || s->shape[s->rank - 1] != R)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: cos and sin must share an even last dim R <= D (R = %lld, D = %lld)",
                       what, (long long)R, (long long)D);
    int64_t rshape[PETREL_MAX_RANK];
    for (int i = 0; i < r; i++) rshape[i] = i == r - 1 ? R : x->shape[i];
    if (!pt_broadcast_to(c, r, rshape, cb) || !pt_broadcast_to(s, r, rshape, sb))
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: cos/sin do not broadcast against x", what);
    return PETREL_OK;
}

typedef struct rope_job {
    const pt_tensor *x, *cb, *sb, *y;
    bool interleaved;
} rope_job;

/* Rows [i0, i1) of the rotation (a row: the last dim; threads take whole
 * rows). */
static void rope_part(void *ctx, int part, int64_t i0, int64_t i1) {
    (void)part;
    const rope_job *jb = ctx;
    const pt_tensor *x = jb->x, *cb = jb->cb, *sb = jb->sb, *y = jb->y;
    bool interleaved = jb->interleaved;
    int r = x->rank;
    petrel_dtype odt = y->dtype;
    int64_t D = x->shape[r - 1], R = cb->shape[r - 1];
    int64_t es = (int64_t)pt_elsize(y), half = R / 2;
    int64_t xs = x->stride[r - 1] * (int64_t)pt_elsize(x);
    int64_t cs = cb->stride[r - 1] * (int64_t)pt_elsize(cb), ss = sb->stride[r - 1] * (int64_t)pt_elsize(sb);
    for (int64_t row = i0; row < i1; row++) {
        int64_t idx[PETREL_MAX_RANK] = {0}, q = row; /* the row's index, idx[r-1] = 0 */
        for (int i = r - 2; i >= 0; i--) idx[i] = q % x->shape[i], q /= x->shape[i];
        const uint8_t *xr = pt_at(x, idx), *cr = pt_at(cb, idx), *sr = pt_at(sb, idx);
        int64_t o = row * D;
        for (int64_t d = 0; d < D; d++, o++) {
            double xv = pt_load_f64(xr + d * xs, x->dtype), v;
            if (d < R) {
                bool first = interleaved ? d % 2 == 0 : d < half;
                int64_t p = interleaved ? d ^ 1 : first ? d + half : d - half;
                double xp = pt_load_f64(xr + p * xs, x->dtype), rh = first ? -xp : xp;
                double t1 = round_to(xv * pt_load_f64(cr + d * cs, cb->dtype), odt);
                double t2 = round_to(rh * pt_load_f64(sr + d * ss, sb->dtype), odt);
                v = t1 + t2;
            } else {
                v = xv;
            }
            pt_store_f64(y->data + o * es, odt, v);
        }
    }
}

/* y = petrel.rope(x, cos, sin, interleaved), cb and sb from
 * rope_operands; y is a contiguous tensor of x's shape, each product
 * rounded to its dtype.  Channel d < R pairs with p (rotate-half: d -+ R/2;
 * interleaved: d ^ 1), rotated as -x[p] when d is the pair's first. */
static void rope_rows(pt_exec *ex, const pt_tensor *x, const pt_tensor *cb, const pt_tensor *sb, bool interleaved,
                      const pt_tensor *y) {
    int64_t D = x->shape[x->rank - 1];
    if (pt_numel(x) == 0 || D == 0) return;
    rope_job jb = {.x = x, .cb = cb, .sb = sb, .y = y, .interleaved = interleaved};
    pk_parallel(ex, pt_numel(x) / D, pt_pool_min_items(4 * D), rope_part, &jb);
}

static petrel_status fused_rope(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    pt_tensor cb, sb, *out;
    PT_TRY(rope_operands(ex, "rope", x, pk_tensor(ex, n, 1), pk_tensor(ex, n, 2), &cb, &sb));
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    rope_rows(ex, x, &cb, &sb, pk_bool(ex, n, 3), out);
    return PETREL_OK;
}

/* ---- petrel.sdpa_cache ----------------------------------------------------- */

/* q or k (B, H, L, E) rotated by sdpa_cache's rope_cos/rope_sin as
 * petrel.rope would, into *y: contiguous scratch of x's shape and dtype. */
static petrel_status rope_scratch(pt_exec *ex, const char *what, const pt_tensor *x, const pt_tensor *c,
                                  const pt_tensor *s, pt_tensor *y) {
    pt_tensor cb, sb;
    PT_TRY(rope_operands(ex, what, x, c, s, &cb, &sb));
    PT_TRY(dense_scratch(ex, x, y));
    rope_rows(ex, x, &cb, &sb, false, y); /* sdpa_cache folds rotate-half ropes only */
    return PETREL_OK;
}

/* Do new entries src (B, H, L, E) fit cache (B, H, S, E)? */
static bool cache_fits(const pt_tensor *cache, const pt_tensor *src) {
    return src->shape[0] == cache->shape[0] && src->shape[1] == cache->shape[1] && src->shape[3] == cache->shape[3];
}

/* Write src (B, H, L, E) into cache (B, H, S, E) at positions pos (L),
 * already checked to lie in [0, S). */
static void cache_write(const pt_tensor *cache, const pt_tensor *src, const int64_t *pos) {
    int64_t B = src->shape[0], H = src->shape[1], L = src->shape[2], E = src->shape[3];
    size_t des = pt_elsize(cache);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < L; i++) {
                int64_t drow[4] = {b, h, pos[i], 0}, srow[4] = {b, h, i, 0};
                if (cache->dtype == src->dtype && cache->stride[3] == 1 && src->stride[3] == 1) {
                    memcpy(pt_at(cache, drow), pt_at(src, srow), des * (size_t)E); /* a row at once */
                    continue;
                }
                for (int64_t e = 0; e < E; e++) {
                    int64_t di[4] = {b, h, pos[i], e}, si[4] = {b, h, i, e};
                    uint8_t *dp = pt_at(cache, di);
                    const uint8_t *sp = pt_at(src, si);
                    if (cache->dtype == src->dtype) memcpy(dp, sp, des);
                    else pt_store_f64(dp, cache->dtype, pt_load_f64(sp, src->dtype));
                }
            }
}

/* Load the first `rows` rows of the matrix t[b, h] (rows, cols) into
 * row-major doubles; rows contiguous along cols take nu_widen_f64's
 * direct loops (the same values). */
static void load_mat(const pt_tensor *t, int64_t b, int64_t h, int64_t rows, double *dst) {
    int64_t cols = t->shape[3];
    for (int64_t i = 0; i < rows; i++) {
        int64_t idx[4] = {b, h, i, 0};
        const uint8_t *row = pt_at(t, idx);
        if (t->stride[3] == 1) {
            nu_widen_f64(row, t->dtype, cols, dst + i * cols);
            continue;
        }
        for (int64_t j = 0; j < cols; j++)
            dst[i * cols + j] = pt_load_f64(row + j * t->stride[3] * (int64_t)pt_elsize(t), t->dtype);
    }
}

/* Is cache column j excluded for query row (b, h, i)?  Only exact
 * exclusions count (causal, a false bool mask, a -inf float mask): such a
 * column adds exp(-inf) = 0 to the softmax, so skipping it is exact. */
static bool col_excluded(const pt_tensor *m, bool has_mask, bool mbool, bool causal, int64_t b, int64_t h,
                         int64_t i, int64_t j) {
    if (causal && j > i) return true;
    if (!has_mask) return false;
    int64_t mi[4] = {b, h, i, j};
    return nu_mask_drops(m, mbool, pt_at(m, mi));
}

/* The attention of sdpa_cache for (batch, cache head) groups [g0, g1),
 * with thread `part`'s scratch. */
typedef struct sc_job {
    const pt_tensor *q, *kc, *vc, *m; /* m: the broadcast mask or NULL */
    pt_tensor *out;
    double *work;
    int64_t per, Hq, Hkv, L, E, Ev, used;
    double scale;
    bool causal;
} sc_job;

static void sc_groups(void *ctx, int part, int64_t g0, int64_t g1) {
    const sc_job *jb = ctx;
    int64_t L = jb->L, E = jb->E, Ev = jb->Ev, used = jb->used, group = jb->Hq / jb->Hkv;
    int64_t es = (int64_t)pt_elsize(jb->out);
    double *qd = jb->work + part * jb->per, *kd = qd + L * E, *vd = kd + used * E, *sc = vd + used * Ev,
           *acc = sc + used;
    for (int64_t g = g0; g < g1; g++) {
        int64_t b = g / jb->Hkv, hk = g % jb->Hkv;
        load_mat(jb->kc, b, hk, used, kd);
        load_mat(jb->vc, b, hk, used, vd);
        for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
            load_mat(jb->q, b, h, L, qd);
            for (int64_t i = 0; i < L; i++) {
                int64_t mi[4] = {b, h, 0, 0};
                nu_attend_row(qd + i * E, kd, vd, used, E, Ev, jb->scale, jb->causal, i, jb->m, mi, sc, acc);
                uint8_t *orow = jb->out->data + (((b * jb->Hq + h) * L + i) * Ev) * es;
                for (int64_t e = 0; e < Ev; e++) pt_store_f64(orow + e * es, jb->out->dtype, acc[e]);
            }
        }
    }
}

static petrel_status fused_sdpa_cache(pt_exec *ex, const pt_node *n) {
    const pt_tensor *q = pk_tensor(ex, n, 0), *k = pk_tensor(ex, n, 1), *v = pk_tensor(ex, n, 2);
    const pt_tensor *kc = pk_tensor(ex, n, 3), *vc = pk_tensor(ex, n, 4), *pos_t = pk_tensor(ex, n, 5);
    const pt_tensor *mask = pk_tensor(ex, n, 6);
    if (!q || !k || !v || !kc || !vc || !pos_t || q->rank != 4 || k->rank != 4 || v->rank != 4 ||
        kc->rank != 4 || vc->rank != 4 || pos_t->rank != 1)
        return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache needs 4-D q, k, v, caches and 1-D positions");
    int64_t B = q->shape[0], Hq = q->shape[1], L = q->shape[2], E = q->shape[3];
    int64_t Hkv = kc->shape[1], S = kc->shape[2], Ev = vc->shape[3];
    if (kc->shape[0] != B || vc->shape[0] != B || vc->shape[1] != Hkv || vc->shape[2] != S ||
        kc->shape[3] != E || Hkv <= 0 || Hq % Hkv != 0 || k->shape[2] != L || v->shape[2] != L ||
        pos_t->shape[0] != L)
        return pk_fail(ex, PETREL_ERR_SHAPE,
                       "sdpa_cache shapes do not fit: q (%lld, %lld, %lld, %lld), cache (%lld, %lld, %lld, %lld), "
                       "%lld positions",
                       (long long)B, (long long)Hq, (long long)L, (long long)E, (long long)kc->shape[0],
                       (long long)Hkv, (long long)S, (long long)kc->shape[3], (long long)pos_t->shape[0]);
    if (!cache_fits(kc, k) || !cache_fits(vc, v))
        return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache: new keys or values do not match their cache's (B, H, ., E)");
    if (pt_dtype_is_float(pos_t->dtype) || pos_t->dtype == PETREL_DTYPE_BOOL)
        return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache positions must be integers");
    int64_t mshape[4] = {B, Hq, L, S};
    pt_tensor m;
    if (mask && !pt_broadcast_to(mask, 4, mshape, &m))
        return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache: attn_mask does not broadcast to (B, Hq, L, S)");
    const pt_tensor *rcos = pk_tensor(ex, n, 9), *rsin = pk_tensor(ex, n, 10);
    if (!rcos != !rsin) return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache: rope_cos and rope_sin go together");
    pt_tensor qn, kn; /* q, k normalized (qk_norm) */
    if (pk_bool(ex, n, 11)) {
        const pt_tensor *wq = pk_tensor(ex, n, 12), *wk = pk_tensor(ex, n, 13);
        if (!wq || !wk) return pk_fail(ex, PETREL_ERR_SHAPE, "sdpa_cache: qk_norm needs q_norm_weight and k_norm_weight");
        double eps = pk_float(ex, n, 14);
        bool add_one = pk_bool(ex, n, 15);
        int dt = pk_dtype(ex, n, 16);
        PT_TRY(dense_scratch(ex, q, &qn));
        PT_TRY(rms_norm_rows(ex, wq, eps, add_one, dt, q, &qn));
        PT_TRY(dense_scratch(ex, k, &kn));
        PT_TRY(rms_norm_rows(ex, wk, eps, add_one, dt, k, &kn));
        q = &qn, k = &kn;
    }
    pt_tensor qr, kr; /* q, k rotated */
    if (rcos) {
        PT_TRY(rope_scratch(ex, "sdpa_cache rope of q", q, rcos, rsin, &qr));
        PT_TRY(rope_scratch(ex, "sdpa_cache rope of k", k, rcos, rsin, &kr));
        q = &qr, k = &kr;
    }
    int64_t *pos = (int64_t *)nu_scratch(ex, L, sizeof(int64_t)); /* (L) */
    if (!pos) return NU_NOMEM(ex);
    for (int64_t i = 0; i < L; i++) {
        int64_t idx = i;
        pos[i] = pt_load_i64(pt_at(pos_t, &idx), pos_t->dtype);
        if (pos[i] < 0 || pos[i] >= S)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "sdpa_cache: position %lld is outside the cache (size %lld)",
                           (long long)pos[i], (long long)S);
    }
    int64_t oshape[4] = {B, Hq, L, Ev};
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 4, oshape, &out));
    double scale = pk_is_none(ex, n, 7) ? 1.0 / sqrt((double)E) : pk_float(ex, n, 7);
    bool causal = pk_bool(ex, n, 8);
    bool mbool = mask && mask->dtype == PETREL_DTYPE_BOOL;
    int64_t group = Hq / Hkv;
    /* Columns past the last one any row can see add exactly nothing: a
     * static cache is mostly empty while a conversation is short, so only
     * the used prefix is loaded and attended (the results are identical). */
    int64_t used = (mask || causal) ? 0 : S;
    if (!mask && causal) used = L < S ? L : S; /* row i sees j <= i */
    /* rows the mask repeats (its broadcast dims: stride 0) are scanned once;
     * a decode step's mask is one row for every head */
    int64_t nb = mask && m.stride[0] ? B : 1, nh = mask && m.stride[1] ? Hq : 1,
            ni = mask && (m.stride[2] || causal) ? L : 1;
    /* the last row first: in a prefill chunk it usually sees the most, so
     * the rows before it stop scanning at its prefix */
    for (int64_t b = 0; mask && b < nb && used < S; b++)
        for (int64_t h = 0; h < nh && used < S; h++)
            for (int64_t i = ni - 1; i >= 0 && used < S; i--)
                for (int64_t j = S - 1; j >= used; j--)
                    if (!col_excluded(&m, true, mbool, causal, b, h, i, j)) {
                        used = j + 1;
                        break;
                    }
    /* the reference, per thread: q (L, E), the used prefix of the cache
     * head's k (used, E) and v (used, Ev), scores (used) and the output
     * row (Ev), in double; sized by the prefix, not the cache, and not
     * zeroed (each buffer is written before it is read).  Taken even when
     * the float path runs: the reference redoes a call whose output is
     * not finite, after the caches are written. */
    int np = pk_threads(ex);
    int64_t per = L * E + used * E + used * Ev + used + Ev;
    double *work = (double *)pk_scratch_raw(ex, (size_t)np * (size_t)per * sizeof(double));
    if (!work) return NU_NOMEM(ex);
    nu_fa fa = {0}; /* the float path's scratch, when it takes these caches */
    bool fast = nu_fa_fits(kc, vc);
    if (fast) PT_TRY(nu_fa_reserve(ex, E, Ev, used, &fa));
    /* every check and allocation done: only now touch the state, so a
     * failing call leaves the caches as they were */
    cache_write(kc, k, pos);
    cache_write(vc, v, pos);
    if (B * Hq * L * Ev == 0) return PETREL_OK;
    /* each output row is computed whole by one thread, so results do not
     * depend on the thread count */
    if (fast && nu_fa_run(ex, &fa, q, kc, vc, mask ? &m : NULL, causal, scale, used, out)) return PETREL_OK;
    sc_job jb = {.q = q, .kc = kc, .vc = vc, .m = mask ? &m : NULL, .out = out, .work = work, .per = per,
                 .Hq = Hq, .Hkv = Hkv, .L = L, .E = E, .Ev = Ev, .used = used, .scale = scale, .causal = causal};
    /* a thread per (batch, cache head) group */
    pk_parallel(ex, B * Hkv, pt_pool_min_items(group * L * used * (E + Ev)), sc_groups, &jb);
    return PETREL_OK;
}

/* ---- petrel.rope_table ------------------------------------------------------ */

/* cos, sin (B, L, 2H) of inv_freq (H) and positions (B, L), rounded where
 * the unfused graph rounds (ops.def): the float32 product, cos and sin
 * computed in double as aten.cos and aten.sin are here (unary.c), each
 * stored to float32, the scale product likewise, then the output dtype. */
static petrel_status fused_rope_table(pt_exec *ex, const pt_node *n) {
    rope_table_args t;
    PT_TRY(rope_table_args_of(ex, n, &t));
    const pt_tensor *inv = t.inv, *pos = t.pos;
    pt_tensor *c = t.cos, *s = t.sin;
    int64_t B = t.B, L = t.L, H = t.H;
    petrel_dtype odt = c->dtype;
    double scale = round_to(t.scale, PETREL_DTYPE_F32);
    int64_t es = (int64_t)pt_elsize(c);
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < L; l++) {
            int64_t pi[2] = {b, l};
            double p = round_to(pt_load_f64(pt_at(pos, pi), pos->dtype), PETREL_DTYPE_F32);
            for (int64_t i = 0; i < H; i++) {
                double w = round_to(pt_load_f64(pt_at(inv, &i), inv->dtype), PETREL_DTYPE_F32);
                double fr = round_to(p * w, PETREL_DTYPE_F32);
                double cv = round_to(round_to(cos(fr), PETREL_DTYPE_F32) * scale, PETREL_DTYPE_F32);
                double sv = round_to(round_to(sin(fr), PETREL_DTYPE_F32) * scale, PETREL_DTYPE_F32);
                int64_t o = ((b * L + l) * 2 * H + i) * es, o2 = o + H * es; /* the two equal halves */
                pt_store_f64(c->data + o, odt, cv), pt_store_f64(c->data + o2, odt, cv);
                pt_store_f64(s->data + o, odt, sv), pt_store_f64(s->data + o2, odt, sv);
            }
        }
    return PETREL_OK;
}

/*
** Kernel family "fused": the ops of the "fused ops" section of ops.def.
*/
petrel_status cpu_k_fused(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_PETREL_RMS_NORM: return fused_rms_norm(ex, n);
    case PETREL_OP_PETREL_ROPE: return fused_rope(ex, n);
    case PETREL_OP_PETREL_SDPA_CACHE: return fused_sdpa_cache(ex, n);
    case PETREL_OP_PETREL_ROPE_TABLE: return fused_rope_table(ex, n);
    default: return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a fused op", (int)n->op);
    }
}
