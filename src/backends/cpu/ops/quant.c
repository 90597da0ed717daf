/*
** quant.c -- CPU kernels of the "quant" family: petrel.qlinear and
** petrel.qembedding, the linears and the embedding over quantized weights
** (formats and meaning: ops.def; the byte layout: core/quant_fmt.h).  Part
** of the CPU backend.
**
** The reference dequantizes each weight row group by group into float,
** exactly as ops.def writes W ((q - zp) * s, or e2m1 * e4m3 * t), and dots
** it with x in double, a block of QB weight rows at a time (each row is
** dequantized once per call, whatever M).  When the CPU and the operands
** allow it, ../fast/qmm.c computes the same block with the same float
** weights and float accumulation.  Either way the block's sums then go
** through one epilogue holding the mode's rounding points (linear_n,
** gated_linear, linear_add in matmul.c; mode bias: linear's bias added
** before its one rounding).  Modes n and gated first apply the RMSNorm
** prologue when asked (fused.c's code, as matmul.c does).
*/
#include <math.h>
#include <stdio.h>

#include "../../../core/quant_fmt.h"
#include "../fast/fast.h"
#include "matmul_plan.h"
#include "quant_plan.h"
#include "nn_util.h"

/* Weight rows per block: the reference's dequantized rows (QB, K) float
 * and each block's sums (M, QB) double stay small. */
#define QB 64

/* v rounded to dtype dt (the value a tensor of that dtype would hold). */
static double q_round(double v, petrel_dtype dt) {
    uint64_t tmp;
    pt_store_f64(&tmp, dt, v);
    return pt_load_f64(&tmp, dt);
}

/* gated_linear's activation, as matmul.c computes it (torch's silu, gelu
 * and tanh-approximated gelu). */
static double q_act(double v, int act) {
    switch (act) {
    case MM_ACT_SILU: return v / (1.0 + exp(-v));
    case MM_ACT_GELU: return 0.5 * v * (1.0 + erf(v * M_SQRT1_2));
    default: return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    }
}

/* ---- operands -------------------------------------------------------------- */

/* Weight i checked (quant_plan.h) and described for the kernels. */
static petrel_status q_weight(pt_exec *ex, const char *op, int i, pt_qfmt fmt, int64_t G, int64_t K,
                              const pt_tensor *codes, const pt_tensor *scales, const pt_tensor *zero,
                              cpu_qweight *w) {
    q_weight_ref r = {0};
    PT_TRY(q_operand(ex, op, i, fmt, G, K, codes, scales, zero, &r));
    *w = (cpu_qweight){.fmt = fmt, .N = r.N, .K = K, .G = G, .codes = r.codes, .code_rs = r.code_rs,
                       .scales = r.scales, .sdt = r.sdt, .s_rs = r.s_rs, .s_cs = r.s_cs, .zeros = r.zeros,
                       .z_rs = r.z_rs, .z_cs = r.z_cs, .t = 1.0f};
    if (r.tscale) memcpy(&w->t, r.tscale->data, sizeof w->t);
    return PETREL_OK;
}

/* ---- the reference -------------------------------------------------------- */

/* Row n of w dequantized into row (K) float, as ops.def computes W. */
static void q_row(const cpu_qweight *w, int64_t n, float *row) {
    int bits = pt_qfmt_bits((pt_qfmt)w->fmt), qmin = pt_qfmt_qmin((pt_qfmt)w->fmt);
    const uint8_t *c = w->codes + n * w->code_rs;
    size_t ses = petrel_dtype_size(w->sdt);
    for (int64_t g = 0; g < w->K / w->G; g++) {
        const uint8_t *sp = w->scales + (n * w->s_rs + g * w->s_cs) * (int64_t)ses;
        int zp = w->zeros ? w->zeros[n * w->z_rs + g * w->z_cs] : 0;
        if (w->fmt == PT_QFMT_NVFP4) {
            float s = pt_e4m3_to_float(*sp);
            for (int64_t k = g * w->G; k < (g + 1) * w->G; k++)
                row[k] = pt_e2m1_to_float(pt_q_code(c, k, bits)) * s * w->t;
        } else {
            float s = (float)pt_load_f64(sp, w->sdt);
            for (int64_t k = g * w->G; k < (g + 1) * w->G; k++)
                row[k] = (float)((int)pt_q_code(c, k, bits) + qmin - zp) * s;
        }
    }
}

/* One thread's scratch for products with weight blocks. */
typedef struct q_part {
    float *panel;     /* (QB, K) dequantized rows (reference) */
    float *facc;      /* (M, QB) fast sums */
    float *work;      /* cpu_fast_qmm's workspace */
    double *acc[2];   /* (M, QB) sums per weight of a block (gate and up) */
} q_part;

/* What the products of x with weight blocks need: x, and one q_part per
 * thread (blocks of QB rows are spread over the program's threads; each
 * block is computed whole by one, so results do not depend on how many). */
typedef struct q_mm {
    int64_t M, K;
    const double *xd; /* (M, K) x (reference) */
    const float *xs;  /* (M, K) x in the fast kernels' order; NULL: reference */
    q_part *parts;
} q_mm;

/* acc[m * QB + j] = x[m] . W[n0 + j] for m < M, j < nb. */
static void q_block(const q_mm *c, const q_part *t, const cpu_qweight *w, int64_t n0, int64_t nb, double *acc) {
    int64_t M = c->M, K = c->K;
    if (c->xs) {
        cpu_fast_qmm(w, n0, nb, M, c->xs, t->facc, QB, t->work);
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < nb; j++) acc[m * QB + j] = t->facc[m * QB + j];
        return;
    }
    for (int64_t j = 0; j < nb; j++) q_row(w, n0 + j, t->panel + j * K);
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < nb; j++) {
            const double *xr = c->xd + m * K;
            const float *wr = t->panel + j * K;
            double s = 0.0;
            for (int64_t k = 0; k < K; k++) s += xr[k] * (double)wr[k];
            acc[m * QB + j] = s;
        }
}

/* x (..., K) read as M rows of float for the fast kernels, reordered. */
static float *q_load_x_f32(pt_exec *ex, const pt_tensor *x, pt_qfmt fmt, int64_t M, int64_t K) {
    float *buf = (float *)nu_scratch(ex, M * K, sizeof(float));
    if (!buf || M * K == 0) return buf;
    if (pt_is_contiguous(x) && (x->dtype == PETREL_DTYPE_BF16 || x->dtype == PETREL_DTYPE_F16)) {
        const uint16_t *h = (const uint16_t *)x->data; /* the same floats, without index arithmetic */
        bool bf16 = x->dtype == PETREL_DTYPE_BF16;
        for (int64_t i = 0; i < M * K; i++) buf[i] = pt_half_to_f32(h[i], bf16);
    } else if (pt_is_contiguous(x) && x->dtype == PETREL_DTYPE_F32) {
        memcpy(buf, x->data, sizeof(float) * (size_t)(M * K));
    } else {
        int64_t idx[PETREL_MAX_RANK] = {0}, i = 0;
        do {
            buf[i++] = (float)pt_load_f64(pt_at(x, idx), x->dtype);
        } while (pt_next_index(idx, x->shape, x->rank));
    }
    cpu_fast_qmm_prep(fmt, M, K, buf);
    return buf;
}

/* Set up *c for x and the weights: the fast kernels when every weight
 * suits them, else the reference; scratch for every thread. */
static petrel_status q_mm_init(pt_exec *ex, const pt_tensor *x, const cpu_qweight *ws, int nw, q_mm *c) {
    int64_t K = x->shape[x->rank - 1];
    *c = (q_mm){.M = nu_prod(x->shape, x->rank - 1), .K = K};
    bool fast = c->M > 0 && K > 0 && (x->dtype == PETREL_DTYPE_F32 || x->dtype == PETREL_DTYPE_BF16 ||
                             x->dtype == PETREL_DTYPE_F16);
    for (int i = 0; i < nw && fast; i++) fast = cpu_fast_qmm_ok(&ws[i]);
    if (fast) {
        if (!(c->xs = q_load_x_f32(ex, x, (pt_qfmt)ws[0].fmt, c->M, K))) return NU_NOMEM(ex);
    } else if (!(c->xd = nu_load_f64(ex, x))) {
        return NU_NOMEM(ex);
    }
    int np = pk_threads(ex);
    if (!(c->parts = (q_part *)nu_scratch(ex, np, sizeof *c->parts))) return NU_NOMEM(ex);
    for (int i = 0; i < np; i++) {
        q_part *t = &c->parts[i];
        *t = (q_part){0};
        if (fast) {
            t->facc = (float *)nu_scratch(ex, c->M * QB, sizeof(float));
            t->work = (float *)nu_scratch(ex, cpu_fast_qmm_work(&ws[0], c->M), sizeof(float));
        } else {
            t->panel = (float *)nu_scratch(ex, QB * K, sizeof(float));
        }
        t->acc[0] = (double *)nu_scratch(ex, c->M * QB, sizeof(double));
        t->acc[1] = (double *)nu_scratch(ex, c->M * QB, sizeof(double));
        if (!(fast ? t->facc && t->work : t->panel != NULL) || !t->acc[0] || !t->acc[1]) return NU_NOMEM(ex);
    }
    return PETREL_OK;
}

/* The fewest blocks of QB rows worth a thread of their own. */
static int64_t q_min_blocks(const q_mm *c) { return pt_pool_min_items(QB * c->K * c->M); }

/* ---- petrel.qlinear ---------------------------------------------------------- */

/* Offset in elements of t's row m (t viewed as (M, N), leading dims flattened). */
static int64_t q_row_offset(const pt_tensor *t, int64_t m) {
    int64_t off = 0;
    for (int d = t->rank - 2; d >= 0; d--) {
        off += (m % t->shape[d]) * t->stride[d];
        m /= t->shape[d];
    }
    return off;
}


/* Mode "n": output i = x @ W_i^T, rounded once; blocks [b0, b1) of one
 * weight per thread. */
typedef struct q_n_job {
    const q_mm *c;
    const cpu_qweight *w;
    pt_tensor *out;
} q_n_job;

static void q_n_blocks(void *ctx, int part, int64_t b0, int64_t b1) {
    const q_n_job *jb = ctx;
    const q_mm *c = jb->c;
    const q_part *t = &c->parts[part];
    int64_t N = jb->w->N, es = (int64_t)pt_elsize(jb->out);
    for (int64_t b = b0; b < b1; b++) {
        int64_t n0 = b * QB, nb = N - n0 < QB ? N - n0 : QB;
        q_block(c, t, jb->w, n0, nb, t->acc[0]);
        for (int64_t m = 0; m < c->M; m++)
            for (int64_t j = 0; j < nb; j++)
                pt_store_f64(jb->out->data + (m * N + n0 + j) * es, jb->out->dtype, t->acc[0][m * QB + j]);
    }
}

static petrel_status q_linear_n(pt_exec *ex, const pt_node *n, const pt_tensor *x, const cpu_qweight *ws, int nw,
                                const q_mm *c) {
    int64_t shape[PETREL_MAX_RANK];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->rank);
    for (int i = 0; i < nw; i++) {
        if (!nu_out_used(n, i)) continue;
        int64_t N = ws[i].N;
        pt_tensor *out;
        shape[x->rank - 1] = N;
        PT_TRY(pk_out_alloc(ex, n, i, x->rank, shape, &out));
        q_n_job jb = {.c = c, .w = &ws[i], .out = out};
        pk_parallel(ex, (N + QB - 1) / QB, q_min_blocks(c), q_n_blocks, &jb);
    }
    return PETREL_OK;
}

/* Modes "gated" (act >= 0: act(g) * u, weights gate and up), "add"
 * (residual + p) and "bias" (p + b): gated_linear's, linear_add's and
 * linear's rounding points; blocks [b0, b1) per thread. */
typedef struct q_2_job {
    const q_mm *c;
    const cpu_qweight *ws;
    int nw, act;
    bool bias;            /* "bias": res is the bias, added before the one rounding */
    const pt_tensor *res; /* "add" / "bias": the residual or bias broadcast to the output */
    pt_tensor *out;
} q_2_job;

static void q_2_blocks(void *ctx, int part, int64_t b0, int64_t b1) {
    const q_2_job *jb = ctx;
    const q_mm *c = jb->c;
    const q_part *t = &c->parts[part];
    const pt_tensor *res = jb->res, *out = jb->out;
    int64_t N = jb->ws[0].N, es = (int64_t)pt_elsize(out), res_es = res ? (int64_t)pt_elsize(res) : 0;
    petrel_dtype dt = out->dtype;
    for (int64_t b = b0; b < b1; b++) {
        int64_t n0 = b * QB, nb = N - n0 < QB ? N - n0 : QB;
        for (int i = 0; i < jb->nw; i++) q_block(c, t, &jb->ws[i], n0, nb, t->acc[i]);
        for (int64_t m = 0; m < c->M; m++) {
            const uint8_t *rrow = res ? res->data + q_row_offset(res, m) * res_es : NULL;
            for (int64_t j = 0; j < nb; j++) {
                double a = t->acc[0][m * QB + j], p = q_round(a, dt), v;
                if (jb->act >= 0) /* act(g) rounded, as silu(g) is, times u rounded */
                    v = q_round(q_act(p, jb->act), dt) * q_round(t->acc[1][m * QB + j], dt);
                else /* add: p rounded first, as linear's result is; bias: inside linear's one rounding */
                    v = pt_load_f64(rrow + (n0 + j) * res->stride[res->rank - 1] * res_es, res->dtype) +
                        (jb->bias ? a : p);
                pt_store_f64(out->data + (m * N + n0 + j) * es, dt, v);
            }
        }
    }
}

static petrel_status q_linear_2(pt_exec *ex, const pt_node *n, const pt_tensor *x, const cpu_qweight *ws, int nw,
                                int act, bool bias, const q_mm *c) {
    int64_t N = ws[0].N, shape[PETREL_MAX_RANK];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->rank);
    shape[x->rank - 1] = N;
    pt_tensor res, *out;
    if (act < 0) {
        const pt_tensor *r = pk_tensor(ex, n, 4);
        if (!r || !pt_broadcast_to(r, x->rank, shape, &res))
            return pk_fail(ex, PETREL_ERR_SHAPE, "qlinear: the %s does not fit the product",
                           bias ? "bias" : "residual");
    }
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, shape, &out));
    q_2_job jb = {.c = c, .ws = ws, .nw = nw, .act = act, .bias = bias, .res = act < 0 ? &res : NULL, .out = out};
    pk_parallel(ex, (N + QB - 1) / QB, q_min_blocks(c), q_2_blocks, &jb);
    return PETREL_OK;
}

static petrel_status q_linear(pt_exec *ex, const pt_node *n) {
    const char *op = "qlinear";
    q_linear_args qa;
    PT_TRY(q_linear_args_of(ex, n, &qa));
    const pt_tensor *x = qa.x;
    int nc = qa.nw, mode = qa.mode, act = qa.act;
    cpu_qweight *ws = (cpu_qweight *)nu_scratch(ex, nc, sizeof *ws);
    if (!ws) return NU_NOMEM(ex);
    for (int i = 0; i < nc; i++)
        PT_TRY(q_weight(ex, op, i, qa.fmt, qa.G, qa.K, qa.codes[i], qa.scales[i], qa.nz ? qa.zeros[i] : NULL, &ws[i]));
    pt_tensor xn; /* x after the RMSNorm prologue (modes n and gated) */
    PT_TRY(cpu_rms_norm_prologue(ex, n, 9, x, &xn));
    x = &xn;
    if (mode == Q_MODE_GATED && ws[0].N != ws[1].N)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: gate and up weights differ in size (%lld vs %lld rows)", op,
                       (long long)ws[0].N, (long long)ws[1].N);
    q_mm c;
    PT_TRY(q_mm_init(ex, x, ws, nc, &c));
    if (mode == Q_MODE_N) return q_linear_n(ex, n, x, ws, nc, &c);
    return q_linear_2(ex, n, x, ws, nc, act, mode == Q_MODE_BIAS, &c);
}

/* ---- petrel.qexpert_linear ---------------------------------------------------- */

/* The rows grouped by expert (nu_expert_groups) and x gathered in that
 * order, so that each expert's rows are one block of M rows for q_block;
 * items are (expert used, block of QB weight rows) pairs, spread over the
 * threads in one call, each computed whole by one thread. */
typedef struct q_x_job {
    const q_mm *c;             /* over the gathered x: all T rows */
    const cpu_qweight *ws;     /* (nused) the experts' weights */
    const int64_t *r0, *perm;  /* (nused + 1) first gathered row per expert used; (T) original row */
    int64_t nblk;              /* blocks of QB rows per expert */
    pt_tensor *out;
} q_x_job;

static void q_x_blocks(void *ctx, int part, int64_t i0, int64_t i1) {
    const q_x_job *jb = ctx;
    const q_part *t = &jb->c->parts[part];
    int64_t N = jb->ws[0].N, K = jb->c->K, es = (int64_t)pt_elsize(jb->out);
    for (int64_t i = i0; i < i1; i++) {
        int64_t u = i / jb->nblk, n0 = i % jb->nblk * QB, nb = N - n0 < QB ? N - n0 : QB;
        int64_t s0 = jb->r0[u], M = jb->r0[u + 1] - s0;
        q_mm c = *jb->c; /* the expert's rows only */
        c.M = M;
        if (c.xs) c.xs += s0 * K;
        else c.xd += s0 * K;
        q_block(&c, t, &jb->ws[u], n0, nb, t->acc[0]);
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < nb; j++)
                pt_store_f64(jb->out->data + (jb->perm[s0 + m] * N + n0 + j) * es, jb->out->dtype,
                             t->acc[0][m * QB + j]);
    }
}

static petrel_status q_expert(pt_exec *ex, const pt_node *n) {
    const char *op = "qexpert_linear";
    q_expert_args qa;
    PT_TRY(q_expert_args_of(ex, n, &qa));
    int64_t T = qa.T, K = qa.K, E = qa.E, *perm = NULL, *start = NULL;
    PT_TRY(nu_expert_groups(ex, op, qa.ids, E, &perm, &start));
    /* the experts some row chose, each checked */
    cpu_qweight *ws = (cpu_qweight *)nu_scratch(ex, T, sizeof *ws);
    int64_t *r0 = (int64_t *)nu_scratch(ex, T + 1, sizeof *r0), nused = 0;
    if (!ws || !r0) return NU_NOMEM(ex);
    for (int64_t e = 0; e < E; e++) {
        if (start[e] == start[e + 1]) continue;
        pt_tensor v[3];
        q_weight_ref ref;
        PT_TRY(q_expert_operand(ex, &qa, e, v, &ref));
        PT_TRY(q_weight(ex, op, (int)e, qa.fmt, qa.G, K, &v[0], &v[1], qa.zero ? &v[2] : NULL, &ws[nused]));
        r0[nused++] = start[e];
    }
    r0[nused] = T;
    int64_t N = nused ? ws[0].N : qa.codes->shape[1], shape[2] = {T, N};
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 2, shape, &out));
    if (T == 0 || N == 0) return PETREL_OK;
    /* x's rows in expert order */
    int64_t xes = (int64_t)pt_elsize(qa.x);
    pt_tensor xg = {.dtype = qa.x->dtype, .rank = 2, .shape = {T, K}, .stride = {K, 1}};
    if (!(xg.data = (uint8_t *)pk_scratch_raw(ex, (size_t)(T * K * xes)))) return NU_NOMEM(ex);
    nu_gather_rows(qa.x, perm, T, xg.data);
    q_mm c;
    PT_TRY(q_mm_init(ex, &xg, ws, (int)nused, &c));
    int64_t nblk = (N + QB - 1) / QB;
    q_x_job jb = {.c = &c, .ws = ws, .r0 = r0, .perm = perm, .nblk = nblk, .out = out};
    pk_parallel(ex, nused * nblk, pt_pool_min_items(QB * K * ((T + nused - 1) / nused)), q_x_blocks, &jb);
    return PETREL_OK;
}

/* ---- petrel.qembedding -------------------------------------------------------- */

static petrel_status q_embedding(pt_exec *ex, const pt_node *n) {
    const char *op = "qembedding";
    q_embedding_args qa;
    PT_TRY(q_embedding_args_of(ex, n, &qa));
    const pt_tensor *ind = qa.ind;
    int64_t K = qa.K;
    cpu_qweight w;
    PT_TRY(q_weight(ex, op, 0, qa.fmt, qa.G, K, qa.codes, qa.scales, qa.zero, &w));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, ind->rank + 1, qa.shape, &out));
    if (pt_numel(ind) == 0 || K == 0) return PETREL_OK;
    float *row = (float *)nu_scratch(ex, K, sizeof(float)); /* (K) */
    if (!row) return NU_NOMEM(ex);
    int64_t es = (int64_t)pt_elsize(out), idx[PETREL_MAX_RANK] = {0};
    uint8_t *o = out->data;
    do {
        int64_t v = pt_load_i64(pt_at(ind, idx), ind->dtype), r = v < 0 ? v + w.N : v;
        if (r < 0 || r >= w.N)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: index %lld is out of bounds for size %lld", op, (long long)v,
                           (long long)w.N);
        q_row(&w, r, row);
        for (int64_t k = 0; k < K; k++, o += es) pt_store_f64(o, out->dtype, row[k]);
    } while (pt_next_index(idx, ind->shape, ind->rank));
    return PETREL_OK;
}

/*
** Kernel family "quant": petrel.qlinear (modes n, gated, add, bias),
** petrel.qembedding, petrel.qexpert_linear and petrel.qkv_attn (the
** qlinear and fused.c's sdpa_cache, composed).  Every operand is checked before anything is
** written; a bad one fails the node with a message naming it.
*/
petrel_status cpu_k_quant(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_PETREL_QLINEAR: return q_linear(ex, n);
    case PETREL_OP_PETREL_QEMBEDDING: return q_embedding(ex, n);
    case PETREL_OP_PETREL_QEXPERT_LINEAR: return q_expert(ex, n);
    case PETREL_OP_PETREL_QKV_ATTN: return q_qkv_attn_composed(ex, n, cpu_k_quant, cpu_k_fused);
    default: return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a quant op", (int)n->op);
    }
}
