/*
** matmul.c -- CPU reference kernels for matrix products: mm, bmm, addmm,
** baddbmm, matmul (torch.matmul's rank rules and batch broadcasting),
** linear, transformers' grouped_mm_fallback and the fused linears the
** compiler makes (petrel.linear_n, gated_linear, linear_add; the first
** two normalize x first when their RMSNorm prologue is on, with fused.c's
** code).  Part of the CPU backend.
**
** Every product runs through one loop: the left matrix is converted to
** doubles once per batch, the right one a panel of columns at a time (so a
** large weight such as an LM head never needs a full double copy), each
** output element is a dot product accumulated in double, and the result
** (plus the optional beta * self term) is rounded once into the output.
** f32 products whose operands are both contiguous along k (every `linear`)
** go to the fast variant in ../fast/ instead, which accumulates in float
** like torch; so do bf16 and f16 ones (x converted to float once, the
** weights as they are loaded, the result rounded once); the fixtures check
** both against torch.
*/
#include "../fast/fast.h"
#include "ew_util.h"
#include "matmul_plan.h"
#include "nn_util.h"

/* Columns of the right operand converted per panel: 64 columns of a
 * 4096-deep matrix are 2 MiB of doubles, small enough to stay in cache. */
#define MM_PANEL 64

/* Where results go: out[(row0 + b*M + i) * N + j] = alpha * acc + beta * self[b, i, j]. */
typedef struct mm_sink {
    pt_tensor *out;  /* dense output */
    int64_t row0;    /* first output row (grouped products write a row range) */
    bool has_self;   /* the addend is used (beta != 0) */
    pt_tensor self;  /* addend broadcast to (batch..., M, N) */
    double alpha, beta;
} mm_sink;

/* Pointer to the matrix of `t` (rank nb+2) at batch index `bi`. */
static const uint8_t *mm_batch_ptr(const pt_tensor *t, const int64_t *bi, int nb) {
    int64_t off = 0;
    for (int i = 0; i < nb; i++) off += bi[i] * t->stride[i];
    return t->data + off * (int64_t)pt_elsize(t);
}

/* cpu_fast_gemm_nt_f32 (or _half) over the program's threads: each takes whole
 * groups of 4 weight rows, as the serial call groups them, so the result
 * is the same for any thread count.  Products too small to gain from a
 * second thread (pt_pool_min_work) stay on one. */
typedef struct mm_par {
    int64_t M, N, K, lda, ldb, ldo;
    const float *a, *b;
    const uint16_t *bh; /* b in half precision instead (b NULL) */
    bool bf16;          /* bh holds bf16, else f16 */
    float *out, alpha;
} mm_par;

static void mm_par_part(void *ctx, int part, int64_t g0, int64_t g1) {
    (void)part;
    const mm_par *q = ctx;
    int64_t j0 = g0 * 4, j1 = g1 * 4 < q->N ? g1 * 4 : q->N;
    if (q->bh)
        cpu_fast_gemm_nt_half(q->M, j1 - j0, q->K, q->a, q->lda, q->bh + j0 * q->ldb, q->ldb, q->bf16, q->out + j0,
                              q->ldo, q->alpha);
    else
        cpu_fast_gemm_nt_f32(q->M, j1 - j0, q->K, q->a, q->lda, q->b + j0 * q->ldb, q->ldb, q->out + j0, q->ldo,
                             q->alpha);
}

static void mm_gemm_fast(pt_exec *ex, const mm_par *q) {
    pk_parallel(ex, (q->N + 3) / 4, pt_pool_min_items(4 * q->K * q->M), mm_par_part, (void *)q);
}

/* Conversion buffers from scratch, taken when a product first needs them
 * (scratch is zeroed as it is taken, and a decode step's products on the
 * fast paths need no panel): am (M, K) doubles (floats on the half path),
 * panel (MM_PANEL, K) doubles.  A caller's products share them: am is
 * taken for at least `rows` rows (a grouped product's largest), and again
 * when a product has more. */
typedef struct mm_bufs {
    double *am, *panel;
    int64_t rows, am_rows; /* rows to take am for at least; rows it has */
} mm_bufs;

/* Compute the plan into the sink; a left matrix shared by consecutive
 * batches (a broadcast operand) is converted only once.  Out of scratch:
 * returns with the executor's out-of-memory flag set (nu_scratch). */
static void mm_run(pt_exec *ex, const mm_plan *p, const mm_sink *snk, mm_bufs *bufs) {
    int64_t M = p->M, K = p->K, N = p->N;
    int64_t nbatch = nu_prod(p->bshape, p->nb);
    if (nbatch == 0 || M == 0 || N == 0) return;
    int ra = p->a.rank, rb = p->b.rank;
    int64_t ars = p->a.stride[ra - 2], acs = p->a.stride[ra - 1];
    int64_t brs = p->b.stride[rb - 2], bcs = p->b.stride[rb - 1];
    int64_t aes = (int64_t)pt_elsize(&p->a), bes = (int64_t)pt_elsize(&p->b);
    int64_t oes = (int64_t)pt_elsize(snk->out);
    const uint8_t *last_a = NULL;
    int64_t bi[PETREL_MAX_RANK + 2] = {0};
    /* f32 operands both contiguous along k (x @ W^T): the fast variant,
     * accumulating in float as torch does */
    bool fast = p->a.dtype == PETREL_DTYPE_F32 && p->b.dtype == PETREL_DTYPE_F32 &&
                snk->out->dtype == PETREL_DTYPE_F32 && acs == 1 && brs == 1 && K > 0;
    petrel_dtype hdt = p->a.dtype;
    bool half = (hdt == PETREL_DTYPE_BF16 || hdt == PETREL_DTYPE_F16) && p->b.dtype == hdt &&
                snk->out->dtype == hdt && brs == 1 && K > 0;
    float *hout = half ? (float *)nu_scratch(ex, M * N, sizeof(float)) : NULL; /* the float results */
    if (half && !hout) return;                                                   /* out of memory: flagged */
    if (!fast && (!bufs->am || bufs->am_rows < M)) {
        bufs->am_rows = M > bufs->rows ? M : bufs->rows;
        if (!(bufs->am = (double *)nu_scratch(ex, bufs->am_rows * K, sizeof(double)))) return;
    }
    if (!fast && !half && !bufs->panel && !(bufs->panel = (double *)nu_scratch(ex, MM_PANEL * K, sizeof(double))))
        return;
    double *am = bufs->am, *panel = bufs->panel;
    for (int64_t b = 0; b < nbatch; b++) {
        const uint8_t *pa = mm_batch_ptr(&p->a, bi, p->nb);
        const uint8_t *pb = mm_batch_ptr(&p->b, bi, p->nb);
        if (half) {
            float *af = (float *)am; /* (M, K) floats in the doubles' buffer */
            if (pa != last_a) {
                for (int64_t i = 0; i < M; i++)
                    for (int64_t k = 0; k < K; k++) {
                        uint16_t h = *(const uint16_t *)(pa + (i * ars + k * acs) * aes);
                        af[i * K + k] = pt_half_to_f32(h, hdt == PETREL_DTYPE_BF16);
                    }
                last_a = pa;
            }
            mm_par q = {.M = M, .N = N, .K = K, .lda = K, .ldb = bcs, .ldo = N, .a = af,
                        .bh = (const uint16_t *)pb, .bf16 = hdt == PETREL_DTYPE_BF16, .out = hout,
                        .alpha = (float)snk->alpha};
            mm_gemm_fast(ex, &q);
            uint8_t *o = snk->out->data + (snk->row0 + b * M) * N * oes;
            if (!snk->has_self) { /* as pt_store_f64 rounds a float's value: directly */
                uint16_t *oh = (uint16_t *)o;
                bool bf = hdt == PETREL_DTYPE_BF16;
                for (int64_t i = 0; i < M * N; i++) oh[i] = bf ? pt_f32_to_bf16(hout[i]) : pt_f32_to_f16(hout[i]);
                pt_next_index(bi, p->bshape, p->nb);
                continue;
            }
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double v = hout[i * N + j];
                    if (snk->has_self) {
                        bi[p->nb] = i, bi[p->nb + 1] = j;
                        v += snk->beta * pt_load_f64(pt_at(&snk->self, bi), snk->self.dtype);
                    }
                    pt_store_f64(o + (i * N + j) * oes, hdt, v); /* rounded once */
                }
            bi[p->nb] = bi[p->nb + 1] = 0;
            pt_next_index(bi, p->bshape, p->nb);
            continue;
        }
        if (fast) {
            float *o = (float *)snk->out->data + (snk->row0 + b * M) * N;
            mm_par q = {.M = M, .N = N, .K = K, .lda = ars, .ldb = bcs, .ldo = N, .a = (const float *)pa,
                        .b = (const float *)pb, .out = o, .alpha = (float)snk->alpha};
            mm_gemm_fast(ex, &q);
            for (int64_t i = 0; snk->has_self && i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    bi[p->nb] = i, bi[p->nb + 1] = j;
                    o[i * N + j] += (float)(snk->beta * pt_load_f64(pt_at(&snk->self, bi), snk->self.dtype));
                }
            bi[p->nb] = bi[p->nb + 1] = 0;
            pt_next_index(bi, p->bshape, p->nb);
            continue;
        }
        if (pa != last_a) {
            for (int64_t i = 0; i < M; i++)
                for (int64_t k = 0; k < K; k++)
                    am[i * K + k] = pt_load_f64(pa + (i * ars + k * acs) * aes, p->a.dtype);
            last_a = pa;
        }
        for (int64_t j0 = 0; j0 < N; j0 += MM_PANEL) {
            int64_t nj = N - j0 < MM_PANEL ? N - j0 : MM_PANEL;
            /* panel[jj] = column j0 + jj of b, contiguous along k */
            for (int64_t jj = 0; jj < nj; jj++)
                for (int64_t k = 0; k < K; k++)
                    panel[jj * K + k] =
                        pt_load_f64(pb + (k * brs + (j0 + jj) * bcs) * bes, p->b.dtype);
            for (int64_t i = 0; i < M; i++) {
                const double *arow = am + i * K;
                uint8_t *orow = snk->out->data + ((snk->row0 + b * M + i) * N + j0) * oes;
                for (int64_t jj = 0; jj < nj; jj++) {
                    const double *bcol = panel + jj * K;
                    double acc = 0.0;
                    for (int64_t k = 0; k < K; k++) acc += arow[k] * bcol[k];
                    double v = snk->alpha * acc;
                    if (snk->has_self) {
                        bi[p->nb] = i, bi[p->nb + 1] = j0 + jj;
                        v += snk->beta * pt_load_f64(pt_at(&snk->self, bi), snk->self.dtype);
                    }
                    pt_store_f64(orow + jj * oes, snk->out->dtype, v);
                }
            }
        }
        bi[p->nb] = bi[p->nb + 1] = 0;
        pt_next_index(bi, p->bshape, p->nb);
    }
}

/* Output 0 = alpha * (a @ b) + beta * self with torch.matmul's rules: 1-D
 * operands become (1, K) / (K, 1) matrices whose added dim is dropped from
 * the result, batch dims broadcast.  self (NULL = none) broadcasts to the
 * product (batch..., M, N); torch ignores it entirely when beta == 0, so
 * NaN/inf in it do not leak through. */
static petrel_status mm_matmul(pt_exec *ex, const pt_node *n, const pt_tensor *a,
                               const pt_tensor *b, const pt_tensor *self, double beta,
                               double alpha) {
    if (a->rank == 0 || b->rank == 0)
        return pk_fail(ex, PETREL_ERR_SHAPE, "matmul operands must be at least 1-D");
    pt_tensor a2 = a->rank == 1 ? mm_unsqueezed(a, 0) : *a; /* (1, K) */
    pt_tensor b2 = b->rank == 1 ? mm_unsqueezed(b, 1) : *b; /* (K, 1) */
    mm_plan p;
    PT_TRY(mm_plan_make(ex, &a2, &b2, &p));
    int64_t shape[PETREL_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < p.nb; i++) shape[rank++] = p.bshape[i];
    if (a->rank > 1) shape[rank++] = p.M;
    if (b->rank > 1) shape[rank++] = p.N;
    mm_sink snk = {.row0 = 0, .alpha = alpha, .beta = beta};
    snk.has_self = self && beta != 0.0;
    if (snk.has_self) {
        int64_t pshape[PETREL_MAX_RANK];
        memcpy(pshape, p.bshape, sizeof(int64_t) * (size_t)p.nb);
        pshape[p.nb] = p.M, pshape[p.nb + 1] = p.N;
        if (!pt_broadcast_to(self, p.nb + 2, pshape, &snk.self))
            return pk_fail(ex, PETREL_ERR_SHAPE, "self/bias does not broadcast to the product");
    }
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &snk.out));
    mm_bufs bufs = {0};
    mm_run(ex, &p, &snk, &bufs);
    return PETREL_OK;
}

/* Rows [r0, r1) of a (S, K) times expert e's matrix of w, into the sink's
 * rows [r0, r1): w (E, K, N) as grouped_mm has it, or with nk (E, N, K),
 * expert_linear's, read transposed. */
static void mm_expert_rows(pt_exec *ex, const pt_tensor *a, int64_t r0, int64_t r1, const pt_tensor *w, int64_t e,
                           bool nk, mm_sink *snk, mm_bufs *bufs) {
    int64_t K = a->shape[1], N = w->shape[nk ? 1 : 2];
    mm_plan p = {.nb = 0, .M = r1 - r0, .K = K, .N = N};
    p.a = *a;
    p.a.shape[0] = r1 - r0;
    p.a.data = a->data + r0 * a->stride[0] * (int64_t)pt_elsize(a);
    p.b = *w; /* weight[e] as (K, N) */
    p.b.rank = 2;
    p.b.shape[0] = K, p.b.shape[1] = N;
    p.b.stride[0] = w->stride[nk ? 2 : 1], p.b.stride[1] = w->stride[nk ? 1 : 2];
    p.b.data = w->data + e * w->stride[0] * (int64_t)pt_elsize(w);
    snk->row0 = r0;
    mm_run(ex, &p, snk, bufs);
}

/* transformers' grouped_mm_fallback: input (S, K) has its rows sorted by
 * expert, offs (E) holds each expert's cumulative end row, and
 * out[start:end] = input[start:end] @ weight[e] (weight (E, K, N)).  Rows
 * past the last offset are zero, as in the reference implementation. */
static petrel_status mm_grouped(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0), *w = pk_tensor(ex, n, 1);
    const pt_tensor *offs = pk_tensor(ex, n, 2);
    if (!x || !w || !offs || x->rank != 2 || w->rank != 3 || offs->rank != 1 ||
        offs->shape[0] != w->shape[0] || x->shape[1] != w->shape[1])
        return pk_fail(ex, PETREL_ERR_SHAPE,
                       "grouped_mm expects input (S, K), weight (E, K, N), offs (E)");
    if (pt_dtype_is_float(offs->dtype) || offs->dtype == PETREL_DTYPE_BOOL)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "grouped_mm offs must be integers");
    int64_t S = x->shape[0], E = w->shape[0], N = w->shape[2];
    int64_t shape[2] = {S, N};
    mm_sink snk = {.alpha = 1.0};
    PT_TRY(pk_out_alloc(ex, n, 0, 2, shape, &snk.out));
    mm_bufs bufs = {.rows = S};
    int64_t es = (int64_t)pt_elsize(snk.out);
    int64_t start = 0;
    for (int64_t e = 0; e < E; e++) {
        int64_t end = pt_load_i64(offs->data + e * offs->stride[0] * (int64_t)pt_elsize(offs),
                                  offs->dtype);
        if (end < start || end > S)
            return pk_fail(ex, PETREL_ERR_RUNTIME,
                           "grouped_mm offs must be non-decreasing and <= %lld "
                           "(offs[%lld] = %lld)",
                           (long long)S, (long long)e, (long long)end);
        if (end == start) continue;
        mm_expert_rows(ex, x, start, end, w, e, false, &snk, &bufs);
        start = end;
    }
    for (int64_t i = start * N; i < S * N; i++)
        pt_store_f64(snk.out->data + i * es, snk.out->dtype, 0.0);
    return PETREL_OK;
}

/* petrel.expert_linear: y[t] = x[t] @ weight[ids[t]]^T.  The rows are
 * grouped by expert (nu_expert_groups), gathered into a dense copy of x,
 * each group is one product with its expert's weight (mm_run, as
 * grouped_mm's groups are) into a dense copy of y, and the rows go back
 * to their places.  Each expert's weight is read once per call, however
 * many rows chose it. */
static petrel_status mm_expert(pt_exec *ex, const pt_node *n) {
    const char *op = "expert_linear";
    const pt_tensor *x, *w, *ids;
    PT_TRY(mm_expert_operands(ex, n, &x, &w, &ids));
    int64_t T = x->shape[0], K = x->shape[1], E = w->shape[0], N = w->shape[1];
    int64_t *perm = NULL, *start = NULL;
    PT_TRY(nu_expert_groups(ex, op, ids, E, &perm, &start));
    int64_t shape[2] = {T, N};
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 2, shape, &out));
    if (T == 0 || N == 0) return PETREL_OK;
    int64_t xes = (int64_t)pt_elsize(x), oes = (int64_t)pt_elsize(out);
    pt_tensor xs = {.dtype = x->dtype, .rank = 2, .shape = {T, K}, .stride = {K, 1}};
    pt_tensor ys = {.dtype = out->dtype, .rank = 2, .shape = {T, N}, .stride = {N, 1}};
    xs.data = (uint8_t *)pk_scratch_raw(ex, (size_t)(T * K * xes));
    ys.data = (uint8_t *)pk_scratch_raw(ex, (size_t)(T * N * oes));
    if (!xs.data || !ys.data) return NU_NOMEM(ex);
    nu_gather_rows(x, perm, T, xs.data);
    mm_sink snk = {.out = &ys, .alpha = 1.0};
    mm_bufs bufs = {.rows = T};
    for (int64_t e = 0; e < E; e++) {
        if (start[e] < start[e + 1]) mm_expert_rows(ex, &xs, start[e], start[e + 1], w, e, true, &snk, &bufs);
    }
    for (int64_t i = 0; i < T; i++) /* (out of scratch in mm_run: flagged for the executor) */
        memcpy(out->data + perm[i] * N * oes, ys.data + i * N * oes, (size_t)(N * oes));
    return PETREL_OK;
}

/* ---- fused linears (ops.def: petrel.linear_n, gated_linear, linear_add) ---- */

/* x (..., K) @ w (N, K)^T, rounded once: into output k of the node, or
 * (k < 0) into a dense scratch tensor of output 0's dtype.  *out
 * describes the result. */
static petrel_status mm_linear(pt_exec *ex, const pt_node *n, int k, const pt_tensor *x, const pt_tensor *w,
                               pt_tensor *out) {
    if (!x || !w || x->rank < 2 || w->rank != 2 || x->shape[x->rank - 1] != w->shape[1])
        return pk_fail(ex, PETREL_ERR_SHAPE, "fused linear: x (..., K) and weight (N, K) do not fit");
    pt_tensor wt = mm_transposed(w); /* (K, N) */
    mm_plan p;
    PT_TRY(mm_plan_make(ex, x, &wt, &p));
    int64_t shape[PETREL_MAX_RANK];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->rank);
    shape[x->rank - 1] = w->shape[0];
    mm_sink snk = {.alpha = 1.0};
    if (k >= 0) {
        PT_TRY(pk_out_alloc(ex, n, k, x->rank, shape, &snk.out));
    } else {
        *out = (pt_tensor){.dtype = pk_out_dtype(ex, n, 0), .rank = x->rank};
        memcpy(out->shape, shape, sizeof shape);
        nu_contig_strides(out->rank, out->shape, out->stride);
        out->data = nu_scratch(ex, nu_prod(shape, x->rank), pt_elsize(out));
        if (!out->data) return NU_NOMEM(ex);
        snk.out = out;
    }
    mm_bufs bufs = {0};
    mm_run(ex, &p, &snk, &bufs);
    if (k >= 0) *out = *snk.out;
    return PETREL_OK;
}

/* The activation of petrel.gated_linear (torch's silu and gelu). */
static double mm_act(double v, int act) {
    switch (act) {
    case MM_ACT_SILU: return v / (1.0 + exp(-v));
    case MM_ACT_GELU: return 0.5 * v * (1.0 + erf(v * M_SQRT1_2));
    default: return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    }
}

/* Element i of a dense float tensor of dtype dt (f32, bf16, f16) as
 * pt_load_f64 reads it, and v stored as pt_store_f64 rounds it. */
static inline double mm_ld(const uint8_t *d, int64_t i, petrel_dtype dt) {
    if (dt == PETREL_DTYPE_F32) return ((const float *)d)[i];
    uint16_t h = ((const uint16_t *)d)[i];
    return dt == PETREL_DTYPE_BF16 ? pt_bf16_to_f32(h) : pt_f16_to_f32(h);
}
static inline void mm_st(uint8_t *d, int64_t i, petrel_dtype dt, double v) {
    if (dt == PETREL_DTYPE_F32) ((float *)d)[i] = (float)v;
    else ((uint16_t *)d)[i] = dt == PETREL_DTYPE_BF16 ? pt_f32_to_bf16((float)v) : pt_f32_to_f16((float)v);
}

/* mm_combine's common case in one flat loop: a, b and out of one float
 * dtype, b dense in out's shape (a decode step's residual and up
 * projection).  The same values as the general loop; false when it does
 * not apply. */
static bool mm_combine_dense(const pt_tensor *out, const pt_tensor *a, const pt_tensor *b, int act, int64_t count) {
    petrel_dtype dt = out->dtype;
    if ((dt != PETREL_DTYPE_F32 && dt != PETREL_DTYPE_BF16 && dt != PETREL_DTYPE_F16) || a->dtype != dt ||
        b->dtype != dt || b->rank != out->rank)
        return false;
    for (int64_t d = b->rank - 1, st = 1; d >= 0; st *= b->shape[d], d--)
        if (b->shape[d] != out->shape[d] || (b->shape[d] > 1 && b->stride[d] != st)) return false;
    for (int64_t i = 0; i < count; i++) {
        double av = mm_ld(a->data, i, dt), bv = mm_ld(b->data, i, dt);
        if (act >= 0) {
            av = ew_round(mm_act(av, act), dt) * bv; /* act(g) rounded, as silu(g) is */
        } else {
            av += bv;
        }
        mm_st(out->data, i, dt, av);
    }
    return true;
}

/* out[i] = f(a[i], b[i]) over dense a and out and b broadcast to out's
 * shape, rounded once into out: f = act(a) rounded * b (gated, act >= 0)
 * or a + b (act < 0). */
static void mm_combine(const pt_tensor *out, const pt_tensor *a, const pt_tensor *b, int act) {
    int64_t idx[PETREL_MAX_RANK] = {0}, count = pt_numel(out);
    size_t es = pt_elsize(out), as = pt_elsize(a);
    if (mm_combine_dense(out, a, b, act, count)) return;
    for (int64_t i = 0; i < count; i++) {
        double av = pt_load_f64(a->data + i * (int64_t)as, a->dtype), bv = pt_load_f64(pt_at(b, idx), b->dtype), v;
        if (act >= 0) {
            uint64_t tmp;
            pt_store_f64(&tmp, out->dtype, mm_act(av, act)); /* act(g) rounded, as silu(g) is */
            v = pt_load_f64(&tmp, out->dtype) * bv;
        } else {
            v = av + bv;
        }
        pt_store_f64(out->data + i * (int64_t)es, out->dtype, v);
        pt_next_index(idx, out->shape, out->rank);
    }
}

static petrel_status mm_fused(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x || !pt_dtype_is_float(x->dtype)) return pk_fail(ex, PETREL_ERR_SHAPE, "fused linear needs a float input");
    pt_tensor a, b, *out, xn;
    if (n->op != PETREL_OP_PETREL_LINEAR_ADD) { /* the RMSNorm prologue, when asked for */
        PT_TRY(cpu_rms_norm_prologue(ex, n, n->op == PETREL_OP_PETREL_LINEAR_N ? 2 : 4, x, &xn));
        x = &xn;
    }
    if (n->op == PETREL_OP_PETREL_LINEAR_N) {
        int count = 0;
        const pt_tensor **ws = pk_tensors(ex, n, 1, &count);
        if (!ws || count != n->nout) return pk_fail(ex, PETREL_ERR_SHAPE, "linear_n needs one weight per output");
        for (int i = 0; i < count; i++)
            if (n->outs[i] >= 0) PT_TRY(mm_linear(ex, n, i, x, ws[i], &a));
        return PETREL_OK;
    }
    if (n->op == PETREL_OP_PETREL_GATED_LINEAR) {
        int act = mm_act_id(pk_str(ex, n, 3));
        if (act < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "gated_linear: unknown activation");
        PT_TRY(mm_linear(ex, n, -1, x, pk_tensor(ex, n, 1), &a));
        PT_TRY(mm_linear(ex, n, -1, x, pk_tensor(ex, n, 2), &b));
        if (memcmp(a.shape, b.shape, sizeof(int64_t) * (size_t)a.rank))
            return pk_fail(ex, PETREL_ERR_SHAPE, "gated_linear: gate and up weights differ in size");
        PT_TRY(pk_out_alloc(ex, n, 0, a.rank, a.shape, &out));
        mm_combine(out, &a, &b, act);
        return PETREL_OK;
    }
    /* linear_add */
    const pt_tensor *r = pk_tensor(ex, n, 2);
    PT_TRY(mm_linear(ex, n, -1, x, pk_tensor(ex, n, 1), &a));
    if (!r || !pt_broadcast_to(r, a.rank, a.shape, &b))
        return pk_fail(ex, PETREL_ERR_SHAPE, "linear_add: the residual does not fit the product");
    PT_TRY(pk_out_alloc(ex, n, 0, a.rank, a.shape, &out));
    mm_combine(out, &a, &b, -1);
    return PETREL_OK;
}

/*
** Kernel family "matmul": mm, bmm, addmm, baddbmm, matmul, linear and
** transformers' grouped_mm_fallback.  Operands may be any strided views;
** integer products are exact while the sums stay below 2^53 (they are
** accumulated in double like the rest).
*/
petrel_status cpu_k_matmul(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_MM:
    case PETREL_OP_BMM:
    case PETREL_OP_ADDMM:
    case PETREL_OP_BADDBMM:
    case PETREL_OP_MATMUL:
    case PETREL_OP_LINEAR: {
        mm_args o;
        PT_TRY(mm_args_of(ex, n, &o));
        return mm_matmul(ex, n, o.a, o.b, o.self, o.beta, o.alpha);
    }
    case PETREL_OP_GROUPED_MM_FALLBACK:
        return mm_grouped(ex, n);
    case PETREL_OP_PETREL_EXPERT_LINEAR:
        return mm_expert(ex, n);
    case PETREL_OP_PETREL_LINEAR_N:
    case PETREL_OP_PETREL_GATED_LINEAR:
    case PETREL_OP_PETREL_LINEAR_ADD:
        return mm_fused(ex, n);
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a matmul op", (int)n->op);
    }
}
