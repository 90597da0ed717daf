/*
** sdpa.c -- CPU reference kernel for scaled_dot_product_attention:
** softmax(q @ k^T * scale + mask) @ v in double, with boolean or additive
** masks, top-left aligned causal masking, grouped-query attention
** (enable_gqa: query head h reads key/value head h / (Hq / Hkv)) and
** broadcasting of leading batch dims.  Part of the CPU backend.
**
** Operands of f32, bf16 or f16 keys and values in 4-D take a float path
** first (nu_fa_run, also sdpa_cache's: float accumulation, as torch's CPU
** kernels), the double loops when it does not fit or leaves an output
** non-finite.
**
** A row whose scores are all masked out yields zeros, which is what torch's
** CPU kernel returns (the unfused math formula would give NaN).  A non-zero
** dropout_p fails the node: torch would drop randomly, which no reference
** can reproduce (exported inference graphs pass 0).
*/
#include <math.h>

#include "../fast/fast.h"
#include "nn_util.h"

/* An operand (batch..., rows, cols) and how its batch dims map onto the
 * output's batch index. */
typedef struct sdpa_operand {
    const pt_tensor *t;
    int nb;           /* its batch dims (rank - 2) */
    int64_t rows, cols;
} sdpa_operand;

/* nu_attend_row (nn_util.h), built for AVX-512, AVX2 and the baseline,
 * picked for the CPU at load time: its 8-lane partial sums (nu_v8d, GCC's
 * vector extension) run one, two or four instructions wide.  The values
 * are the same in every build: each lane is one of the 8 sums the code
 * names, and ISO C mode contracts no multiply-add. */
typedef double nu_v8d __attribute__((vector_size(64), aligned(8))); /* any 8-byte aligned address */

__attribute__((target_clones("avx512f", "avx2", "default"))) void
nu_attend_row(const double *q, const double *k, const double *v, int64_t S, int64_t E, int64_t Ev, double scale,
              bool causal, int64_t i, const pt_tensor *m, int64_t *midx, double *sc, double *acc) {
    bool mbool = m && m->dtype == PETREL_DTYPE_BOOL;
    const uint8_t *mrow = NULL; /* the mask's row i, column j at j * mstep bytes */
    int64_t mstep = 0;
    if (m) {
        midx[m->rank - 2] = i, midx[m->rank - 1] = 0;
        mrow = pt_at(m, midx);
        mstep = m->stride[m->rank - 1] * (int64_t)pt_elsize(m);
    }
    double mx = -INFINITY;
    for (int64_t j = 0; j < S; j++) {
        /* an excluded column (causal, a false bool mask) scores -inf
         * whatever its dot product is: not computed */
        const uint8_t *mp = m ? mrow + j * mstep : NULL;
        if ((causal && j > i) || (mbool && !*mp)) {
            sc[j] = -INFINITY;
            continue;
        }
        /* the dot product in 8 interleaved partial sums (a fixed order that
         * vectorizes and does not wait on one chain of additions) */
        const double *kr = k + j * E;
        nu_v8d p8 = {0, 0, 0, 0, 0, 0, 0, 0};
        double s = 0.0;
        int64_t e = 0;
        for (; e + 8 <= E; e += 8) p8 += *(const nu_v8d *)(q + e) * *(const nu_v8d *)(kr + e);
        for (; e < E; e++) s += q[e] * kr[e];
        s += ((p8[0] + p8[1]) + (p8[2] + p8[3])) + ((p8[4] + p8[5]) + (p8[6] + p8[7]));
        s *= scale;
        if (m && !mbool) s += pt_load_f64(mp, m->dtype);
        sc[j] = s;
        if (s > mx || isnan(s)) mx = s; /* NaN sticks and propagates */
    }
    for (int64_t e = 0; e < Ev; e++) acc[e] = 0.0;
    if (mx == -INFINITY) return; /* a fully masked row stays 0 */
    double sum = 0.0; /* exp(-inf) = 0 exactly: a column scoring -inf needs no exp */
    for (int64_t j = 0; j < S; j++) sum += (sc[j] = sc[j] == -INFINITY ? 0.0 : exp(sc[j] - mx));
    for (int64_t j = 0; j < S; j++) sc[j] /= sum;
    /* acc = sum_j p[j] v[j], each acc[e] summed over j in order, 8 columns
     * at a time in registers (in memory, each step waited on the last
     * one's store).  A zero weight is skipped: p * v = 0 adds nothing
     * (acc, a sum that starts at +0, is never -0), unless v is inf or
     * NaN, where skipping it follows torch's fused kernels rather than
     * the math formula. */
    int64_t e0 = 0;
    for (; e0 + 32 <= Ev; e0 += 32) { /* four chains side by side: an add's latency is hidden */
        nu_v8d a0 = {0, 0, 0, 0, 0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
        for (int64_t j = 0; j < S; j++) {
            const double p = sc[j];
            if (p == 0.0) continue;
            const nu_v8d pv = {p, p, p, p, p, p, p, p};
            const double *vr = v + j * Ev + e0;
            a0 += pv * *(const nu_v8d *)vr, a1 += pv * *(const nu_v8d *)(vr + 8);
            a2 += pv * *(const nu_v8d *)(vr + 16), a3 += pv * *(const nu_v8d *)(vr + 24);
        }
        for (int u = 0; u < 8; u++)
            acc[e0 + u] = a0[u], acc[e0 + 8 + u] = a1[u], acc[e0 + 16 + u] = a2[u], acc[e0 + 24 + u] = a3[u];
    }
    for (; e0 + 8 <= Ev; e0 += 8) {
        nu_v8d a8 = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < S; j++) {
            const double p = sc[j];
            if (p == 0.0) continue;
            const nu_v8d pv = {p, p, p, p, p, p, p, p};
            a8 += pv * *(const nu_v8d *)(v + j * Ev + e0);
        }
        for (int u = 0; u < 8; u++) acc[e0 + u] = a8[u];
    }
    for (int64_t j = 0; j < S; j++)
        if (sc[j] != 0.0)
            for (int64_t e = e0; e < Ev; e++) acc[e] += sc[j] * v[j * Ev + e];
}

/* ---- the float path --------------------------------------------------------- */

/* Work items are blocks of up to FA_ROWS query rows of one (batch,
 * key/value head) group, the group's rows in (query head, position)
 * order: a decode step's query heads share each key row, and a prefill's
 * blocks of one group follow each other, so its key and value rows stay
 * in cache.  Per block: each row's columns in play [j0, j1) (its first and
 * last not excluded), the scores of the union of those ranges by the float
 * product of the rows of q with the key rows (cpu/fast/gemm.c), the mask
 * inside each row's range (an excluded column scores -inf whatever its
 * product, a float mask is added), then cpu_fast_softmax_pv. */
enum { FA_ROWS = 32 };

typedef struct fa_job {
    const pt_tensor *q, *k, *v, *m; /* m: the broadcast mask or NULL */
    const pt_tensor *out;
    const nu_fa *fa;
    int64_t Hq, Hkv, L, E, Ev, used, nblk, rows;
    float scale;
    bool causal, mbool;
} fa_job;

bool nu_fa_fits(const pt_tensor *k, const pt_tensor *v) {
    petrel_dtype dt = k->dtype;
    return cpu_fast_attn_enabled() && (dt == PETREL_DTYPE_F32 || dt == PETREL_DTYPE_BF16 || dt == PETREL_DTYPE_F16) &&
           v->dtype == dt && k->rank == 4 && v->rank == 4 && k->stride[3] == 1 && v->stride[3] == 1;
}

petrel_status nu_fa_reserve(pt_exec *ex, int64_t E, int64_t Ev, int64_t used, nu_fa *fa) {
    /* per thread: q (FA_ROWS, E), scores (FA_ROWS, used), outputs
     * (FA_ROWS, Ev) in float, row ranges (2 FA_ROWS); each written before
     * it is read (not zeroed); a flag per thread */
    fa->np = pk_threads(ex);
    fa->per = (size_t)(FA_ROWS * (E + used + Ev) + 2 * FA_ROWS) * sizeof(float);
    fa->work = pk_scratch_raw(ex, (size_t)fa->np * fa->per);
    fa->bad = nu_scratch(ex, fa->np, sizeof(bool));
    return fa->work && fa->bad ? PETREL_OK : NU_NOMEM(ex);
}

/* Does the mask row exclude column j (nu_mask_drops)? */
static inline bool fa_out(const fa_job *jb, const uint8_t *mrow, int64_t mstep, int64_t j) {
    return nu_mask_drops(jb->m, jb->mbool, mrow + j * mstep);
}

static void fa_blocks(void *ctx, int part, int64_t it0, int64_t it1) {
    const fa_job *jb = ctx;
    int64_t E = jb->E, Ev = jb->Ev, used = jb->used, group = jb->Hq / jb->Hkv;
    uint8_t *w = jb->fa->work + (size_t)part * jb->fa->per;
    float *qf = (float *)w, *sc = qf + FA_ROWS * E, *of = sc + FA_ROWS * used;
    int32_t *j0 = (int32_t *)(of + FA_ROWS * Ev), *j1 = j0 + FA_ROWS;
    const uint8_t *mrows[FA_ROWS];
    int64_t es = (int64_t)pt_elsize(jb->out), mstep = 0;
    if (jb->m) mstep = jb->m->stride[3] * (int64_t)pt_elsize(jb->m);
    int64_t qs = jb->q->stride[3] * (int64_t)pt_elsize(jb->q);
    petrel_dtype kdt = jb->k->dtype;
    for (int64_t it = it0; it < it1; it++) {
        int64_t g = it / jb->nblk, r0 = it % jb->nblk * FA_ROWS, b = g / jb->Hkv, hk = g % jb->Hkv;
        int64_t nr = jb->rows - r0 < FA_ROWS ? jb->rows - r0 : FA_ROWS;
        int64_t c0 = used, c1 = 0; /* the union of the rows' ranges */
        for (int64_t r = 0; r < nr; r++) {
            int64_t h = hk * group + (r0 + r) / jb->L, i = (r0 + r) % jb->L;
            int64_t idx[4] = {b, h, i, 0};
            mrows[r] = jb->m ? pt_at(jb->m, idx) : NULL;
            int64_t lo = 0, hi = jb->causal && i + 1 < used ? i + 1 : used;
            while (jb->m && hi > lo && fa_out(jb, mrows[r], mstep, hi - 1)) hi--;
            while (jb->m && lo < hi && fa_out(jb, mrows[r], mstep, lo)) lo++;
            j0[r] = (int32_t)lo, j1[r] = (int32_t)hi;
            if (lo < hi) c0 = lo < c0 ? lo : c0, c1 = hi > c1 ? hi : c1;
            const uint8_t *qp = pt_at(jb->q, idx);
            for (int64_t e = 0; e < E; e++) qf[r * E + e] = (float)pt_load_f64(qp + e * qs, jb->q->dtype);
        }
        if (c1 <= c0) c0 = c1 = 0;
        int64_t lds = c1 - c0, kvi[4] = {b, hk, c0, 0};
        const uint8_t *k = pt_at(jb->k, kvi), *v = pt_at(jb->v, kvi);
        if (lds > 0 && kdt == PETREL_DTYPE_F32)
            cpu_fast_gemm_nt_f32(nr, lds, E, qf, E, (const float *)k, jb->k->stride[2], sc, lds, jb->scale);
        else if (lds > 0)
            cpu_fast_gemm_nt_half(nr, lds, E, qf, E, (const uint16_t *)k, jb->k->stride[2],
                                  kdt == PETREL_DTYPE_BF16, sc, lds, jb->scale);
        for (int64_t r = 0; r < nr; r++) {
            int64_t i = (r0 + r) % jb->L;
            if (j1[r] <= j0[r]) {
                j0[r] = j1[r] = 0;
                continue;
            }
            float *s = sc + r * lds - c0; /* s[j]: column j's score */
            for (int64_t j = j0[r]; jb->m && j < j1[r]; j++) {
                if (jb->causal && j > i) s[j] = -INFINITY;
                else if (jb->mbool) s[j] = mrows[r][j * mstep] ? s[j] : -INFINITY;
                else s[j] += (float)pt_load_f64(mrows[r] + j * mstep, jb->m->dtype);
            }
            j0[r] -= (int32_t)c0, j1[r] -= (int32_t)c0;
        }
        cpu_fast_softmax_pv(nr, sc, lds, j0, j1, v, jb->v->stride[2], jb->v->dtype, Ev, of, Ev);
        for (int64_t r = 0; r < nr; r++) {
            int64_t h = hk * group + (r0 + r) / jb->L, i = (r0 + r) % jb->L;
            uint8_t *orow = jb->out->data + (((b * jb->Hq + h) * jb->L + i) * Ev) * es;
            const float *o = of + r * Ev;
            for (int64_t e = 0; e < Ev; e++) {
                if (!isfinite(o[e])) jb->fa->bad[part] = true;
                pt_store_f64(orow + e * es, jb->out->dtype, o[e]);
            }
        }
    }
}

bool nu_fa_run(pt_exec *ex, const nu_fa *fa, const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
               const pt_tensor *m, bool causal, double scale, int64_t used, const pt_tensor *out) {
    int64_t B = q->shape[0], Hq = q->shape[1], L = q->shape[2], Hkv = k->shape[1];
    int64_t rows = Hq / Hkv * L, nblk = (rows + FA_ROWS - 1) / FA_ROWS, nr = rows < FA_ROWS ? rows : FA_ROWS;
    fa_job jb = {.q = q, .k = k, .v = v, .m = m, .out = out, .fa = fa, .Hq = Hq, .Hkv = Hkv, .L = L,
                 .E = q->shape[3], .Ev = v->shape[3], .used = used, .nblk = nblk, .rows = rows,
                 .scale = (float)scale, .causal = causal, .mbool = m && m->dtype == PETREL_DTYPE_BOOL};
    for (int t = 0; t < fa->np; t++) fa->bad[t] = false;
    /* each output row is computed whole by one thread, so results do not
     * depend on the thread count */
    pk_parallel(ex, B * Hkv * nblk, pt_pool_min_items(nr * used * (jb.E + jb.Ev)), fa_blocks, &jb);
    for (int t = 0; t < fa->np; t++)
        if (fa->bad[t]) return false;
    return true;
}

/* Element offset of the operand's matrix for output batch index bi (rank
 * nb_out).  Batch dims align from the right; size-1 dims broadcast; with
 * GQA the head dim (the last batch dim) of a smaller operand is shared by
 * hq / size consecutive query heads. */
static const uint8_t *sdpa_matrix(const sdpa_operand *o, const int64_t *bi, int nb_out,
                                  bool gqa, int64_t hq) {
    int64_t off = 0;
    for (int j = 0; j < o->nb; j++) {
        int64_t sz = o->t->shape[j], i = bi[nb_out - o->nb + j];
        if (sz == 1)
            i = 0;
        else if (gqa && j == o->nb - 1 && sz != hq)
            i /= hq / sz;
        off += i * o->t->stride[j];
    }
    return o->t->data + off * (int64_t)pt_elsize(o->t);
}

/* Copy a (rows, cols) matrix at p into row-major doubles. */
static void sdpa_load(const sdpa_operand *o, const uint8_t *p, double *dst) {
    int r = o->t->rank;
    int64_t rs = o->t->stride[r - 2], cs = o->t->stride[r - 1];
    int64_t es = (int64_t)pt_elsize(o->t);
    for (int64_t i = 0; i < o->rows; i++)
        for (int64_t j = 0; j < o->cols; j++)
            dst[i * o->cols + j] = pt_load_f64(p + (i * rs + j * cs) * es, o->t->dtype);
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

/*
** Kernel family "sdpa": scaled_dot_product_attention with
**   query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev)
** attn_mask (broadcastable to (..., L, S)): bool keeps where True, any other
** dtype is added to the scores.  scale defaults to 1/sqrt(E).
*/
petrel_status cpu_k_sdpa(pt_exec *ex, const pt_node *n) {
    if (n->op != PETREL_OP_SDPA)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not attention", (int)n->op);
    const pt_tensor *q = pk_tensor(ex, n, 0), *k = pk_tensor(ex, n, 1), *v = pk_tensor(ex, n, 2);
    const pt_tensor *mask = pk_tensor(ex, n, 3);
    if (!q || !k || !v || q->rank < 2 || k->rank < 2 || v->rank < 2)
        return pk_fail(ex, PETREL_ERR_SHAPE, "attention operands must be at least 2-D");
    if (pk_float(ex, n, 4) != 0.0)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED,
                       "attention dropout (dropout_p = %g) is not supported; export in eval mode",
                       pk_float(ex, n, 4));
    bool causal = pk_bool(ex, n, 5);
    bool gqa = pk_bool(ex, n, 7);
    sdpa_operand oq = {q, q->rank - 2, q->shape[q->rank - 2], q->shape[q->rank - 1]};
    sdpa_operand ok = {k, k->rank - 2, k->shape[k->rank - 2], k->shape[k->rank - 1]};
    sdpa_operand ov = {v, v->rank - 2, v->shape[v->rank - 2], v->shape[v->rank - 1]};
    int64_t L = oq.rows, E = oq.cols, S = ok.rows, Ev = ov.cols;
    if (ok.cols != E || ov.rows != S)
        return pk_fail(ex, PETREL_ERR_SHAPE,
                       "attention shapes do not match: q (.., %lld, %lld), k (.., %lld, %lld), "
                       "v (.., %lld, %lld)",
                       (long long)L, (long long)E, (long long)S, (long long)ok.cols,
                       (long long)ov.rows, (long long)Ev);
    double scale = pk_is_none(ex, n, 6) ? 1.0 / sqrt((double)E) : pk_float(ex, n, 6);

    /* output batch shape: q's batch broadcast with k's and v's, where under
     * GQA the key/value head dim counts as the query head count */
    int nb = oq.nb > ok.nb ? oq.nb : ok.nb;
    if (ov.nb > nb) nb = ov.nb;
    if (nb + 2 > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_SHAPE, "attention rank too large");
    int64_t hq = oq.nb >= 1 ? q->shape[oq.nb - 1] : 1;
    if (gqa && oq.nb < 1)
        return pk_fail(ex, PETREL_ERR_SHAPE, "enable_gqa needs a head dim (rank >= 3)");
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

    int64_t oshape[PETREL_MAX_RANK];
    for (int d = 0; d < nb; d++) oshape[d] = bshape[d];
    oshape[nb] = L, oshape[nb + 1] = Ev;
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, nb + 2, oshape, &out));
    int64_t nbatch = nu_prod(bshape, nb);
    if (nbatch == 0 || L == 0 || Ev == 0) return PETREL_OK;

    /* the float path for 4-D operands (batch, heads, rows, width), a
     * key/value head count that divides the query heads' (GQA, or 1
     * broadcast), their batch dim broadcast */
    if (nb == 2 && q->rank == 4 && nu_fa_fits(k, v) && k->shape[1] == v->shape[1] && bshape[1] % k->shape[1] == 0) {
        pt_tensor qb, kb, vb;
        int64_t B = bshape[0], Hq = bshape[1], Hkv = k->shape[1];
        if (pt_broadcast_to(q, 4, (int64_t[]){B, Hq, L, E}, &qb) &&
            pt_broadcast_to(k, 4, (int64_t[]){B, Hkv, S, E}, &kb) &&
            pt_broadcast_to(v, 4, (int64_t[]){B, Hkv, S, Ev}, &vb)) {
            nu_fa fa;
            PT_TRY(nu_fa_reserve(ex, E, Ev, S, &fa));
            if (nu_fa_run(ex, &fa, &qb, &kb, &vb, mask ? &m : NULL, causal, scale, S, out)) return PETREL_OK;
        }
    }

    double *qd = (double *)nu_scratch(ex, L * E, sizeof(double));   /* (L, E) */
    double *kd = (double *)nu_scratch(ex, S * E, sizeof(double));   /* (S, E) */
    double *vd = (double *)nu_scratch(ex, S * Ev, sizeof(double));  /* (S, Ev) */
    double *sc = (double *)nu_scratch(ex, S, sizeof(double));       /* (S) scores */
    double *acc = (double *)nu_scratch(ex, Ev, sizeof(double));     /* (Ev) */
    if (!qd || !kd || !vd || !sc || !acc) return NU_NOMEM(ex);
    const uint8_t *lastq = NULL, *lastk = NULL, *lastv = NULL;
    int64_t bi[PETREL_MAX_RANK] = {0};
    int64_t es = (int64_t)pt_elsize(out);
    for (int64_t b = 0; b < nbatch; b++) {
        const uint8_t *pq = sdpa_matrix(&oq, bi, nb, false, hq);
        const uint8_t *pk = sdpa_matrix(&ok, bi, nb, gqa, hq);
        const uint8_t *pv = sdpa_matrix(&ov, bi, nb, gqa, hq);
        if (pq != lastq) sdpa_load(&oq, pq, qd);
        if (pk != lastk) sdpa_load(&ok, pk, kd);
        if (pv != lastv) sdpa_load(&ov, pv, vd);
        lastq = pq, lastk = pk, lastv = pv;
        int64_t midx[PETREL_MAX_RANK];
        for (int d = 0; d < nb; d++) midx[d] = bi[d];
        for (int64_t i = 0; i < L; i++) {
            nu_attend_row(qd + i * E, kd, vd, S, E, Ev, scale, causal, i, mask ? &m : NULL, midx, sc, acc);
            uint8_t *orow = out->data + ((b * L + i) * Ev) * es;
            for (int64_t e = 0; e < Ev; e++) pt_store_f64(orow + e * es, out->dtype, acc[e]);
        }
        pt_next_index(bi, bshape, nb);
    }
    return PETREL_OK;
}
