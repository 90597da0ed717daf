/*
** test_qmatmul.c -- the CPU kernels of petrel.qlinear and
** petrel.qembedding (backends/cpu/ops/quant.c, fast/qmm.c), white-box.
** 1. The shared format helpers (core/quant_fmt.h) against definitions
** written out here: every E4M3 byte, every E2M1 code, packing round trips.
** 2. Each kernel, run through the executor on a one-node graph, against
** "dequantize with ops.def's formula, then matmul" computed here in
** double with its own unpacking: every format, group sizes that take the
** fast kernels and ones that do not, modes n (one and three weights),
** gated (each activation), add and bias, x in f32/bf16/f16, scales in each
** float dtype, decode (M = 1) and prefill shapes, once on the reference
** loops, once on the fast path and, on a CPU with AVX-512, once on the
** AVX2 kernels.  Seeded random codes, scales, zero
** points and inputs.  f32 results within 1e-5 relative L2; bf16/f16
** results are compared with the reference rounded at ops.def's points,
** within 1e-3; NaN fails.  The RMSNorm prologue (modes n and gated, both
** paths, Llama's and Gemma's norm) gives exactly what petrel.rms_norm
** followed by qlinear gives.  qembedding must match exactly.
** 2b. petrel.qexpert_linear (an MoE layer's experts) and its float twin
** petrel.expert_linear: rows routed to random experts (repeats, unused
** experts, negative ids; x also a strided view), each row against "its expert's matrix,
** dequantized here, then matmul" in double, on the same three paths; an
** id out of bounds fails the node and names it.  3. Bad operands fail
** the node with a message naming the problem.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/fast/fast.h"
#include "backends/cpu/fast/simd.h"
#include "core/quant_fmt.h"
#include "runtime/exec.h"

#include "check.h"
#include "graph_util.h"
#include "rng_util.h"

/* ---- the formats, written out independently of quant_fmt.h -------------------- */

typedef struct fmt_def {
    const char *name;
    int bits, qmin, qmax;
    bool asym, fp4;
} fmt_def;

static const fmt_def fmts[] = {
    {"int8", 8, -128, 127, true, false}, {"int8s", 8, -128, 127, false, false}, {"int4", 4, 0, 15, true, false},
    {"int4s", 4, -8, 7, false, false},   {"int2", 2, 0, 3, true, false},        {"int2s", 2, -2, 1, false, false},
    {"nvfp4", 4, 0, 15, false, true},
};
#define NFMTS (int)(sizeof fmts / sizeof fmts[0])

static double ref_e2m1(unsigned c) {
    static const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
    return (c & 8) ? -mag[c & 7] : mag[c & 7];
}

static double ref_e4m3(unsigned b) {
    int e = (b >> 3) & 15, m = b & 7;
    double v = e == 15 && m == 7 ? NAN : e == 0 ? ldexp(m / 8.0, -6) : ldexp(1.0 + m / 8.0, e - 7);
    return (b & 0x80) ? -v : v;
}

static unsigned ref_code(const uint8_t *row, int64_t k, int bits) {
    int64_t bit = k * bits;
    return (row[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
}

static double round_to(double v, petrel_dtype dt) {
    uint64_t tmp;
    pt_store_f64(&tmp, dt, v);
    return pt_load_f64(&tmp, dt);
}

/* ---- 1. the shared helpers ------------------------------------------------------ */

static void test_helpers(void) {
    for (unsigned b = 0; b < 256; b++) {
        double want = ref_e4m3(b), got = pt_e4m3_to_float((uint8_t)b);
        CHECK(isnan(want) ? isnan(got) : (got == want && signbit(got) == signbit(want)), "e4m3 0x%02x: %g, want %g", b,
              got, want);
    }
    for (unsigned c = 0; c < 16; c++)
        CHECK(pt_e2m1_to_float(c) == ref_e2m1(c), "e2m1 %u: %g, want %g", c, pt_e2m1_to_float(c), ref_e2m1(c));
    for (int f = 0; f < NFMTS; f++) {
        int q = pt_qfmt_parse(fmts[f].name);
        CHECK(q == f, "%s parses as %d", fmts[f].name, q);
        if (q != f) continue;
        CHECK(pt_qfmt_bits((pt_qfmt)q) == fmts[f].bits && pt_qfmt_asym((pt_qfmt)q) == fmts[f].asym,
              "%s: bits or asym wrong", fmts[f].name);
        CHECK(fmts[f].fp4 || (pt_qfmt_qmin((pt_qfmt)q) == fmts[f].qmin && pt_qfmt_qmax((pt_qfmt)q) == fmts[f].qmax),
              "%s: range wrong", fmts[f].name);
        /* pack random codes over a dirty row, read them back, and check against the layout rule */
        int bits = fmts[f].bits, nk = 32 * 8 / bits;
        uint8_t row[32];
        unsigned codes[128];
        memset(row, 0xa5, sizeof row);
        for (int k = 0; k < nk; k++) {
            codes[k] = (unsigned)rng_int(0, (1 << bits) - 1);
            pt_q_set_code(row, k, bits, codes[k]);
        }
        int bad = 0;
        for (int k = 0; k < nk; k++) bad += pt_q_code(row, k, bits) != codes[k] || ref_code(row, k, bits) != codes[k];
        CHECK(bad == 0, "%s: %d codes read back wrong", fmts[f].name, bad);
    }
    CHECK(pt_qfmt_parse("int3") < 0 && pt_qfmt_parse(NULL) < 0, "bad names parse");
}

/* ---- one-node graphs ---------------------------------------------------------- */

/* A test tensor: bytes owned here, shape. */
typedef struct tbuf {
    petrel_dtype dt;
    int rank;
    int64_t shape[4];
    uint8_t *data;
} tbuf;

static int64_t tb_numel(const tbuf *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->shape[i];
    return n;
}

static tbuf tb_new(petrel_dtype dt, int rank, const int64_t *shape) {
    tbuf t = {dt, rank, {0}, NULL};
    memcpy(t.shape, shape, sizeof(int64_t) * (size_t)rank);
    t.data = calloc((size_t)(tb_numel(&t) ? tb_numel(&t) : 1), petrel_dtype_size(dt));
    return t;
}

static double tb_get(const tbuf *t, int64_t i) { return pt_load_f64(t->data + i * (int64_t)petrel_dtype_size(t->dt), t->dt); }
static void tb_set(tbuf *t, int64_t i, double v) { pt_store_f64(t->data + i * (int64_t)petrel_dtype_size(t->dt), t->dt, v); }

/* A value: a constant holding t's bytes (borrowed), or (t NULL) a node
 * result of the given meta. */
static int32_t value(pt_graph *g, const char *name, const tbuf *t, petrel_dtype dt, int rank, const int64_t *shape) {
    if (t) dt = t->dt, rank = t->rank, shape = t->shape;
    int32_t vid = tg_value(g, name, t ? PT_SRC_CONST : PT_SRC_NODE, dt, rank, shape);
    if (t) {
        g->values[vid].data = t->data;
        g->values[vid].data_bytes = tb_numel(t) * (int64_t)petrel_dtype_size(t->dt);
    }
    return vid;
}

static void arg_tensors(pt_arg *a, const int32_t *vids, int n) {
    a->kind = PT_ARG_TENSORS;
    a->n = n;
    a->items = n ? pt_calloc((size_t)n, sizeof *a->items) : NULL;
    for (int i = 0; i < n; i++) a->items[i].vid = vids[i];
}
static void arg_tensor(pt_arg *a, int32_t vid) {
    if (vid < 0) return; /* None */
    arg_tensors(a, &vid, 1);
    a->kind = PT_ARG_TENSOR;
}
static void arg_str(pt_arg *a, const char *s) {
    a->kind = PT_ARG_STRING;
    a->str = pt_strdup(s);
}
static void arg_int(pt_arg *a, int64_t v) {
    a->kind = PT_ARG_INT;
    a->n = 1;
    a->items = pt_calloc(1, sizeof *a->items);
    a->items[0] = (pt_item){-1, v, (double)v};
}

static void arg_lit(pt_arg *a, pt_arg_kind kind, double v) {
    a->kind = kind;
    a->n = 1;
    a->items = pt_calloc(1, sizeof *a->items);
    a->items[0] = (pt_item){-1, (int64_t)v, v};
}

/* qlinear's RMSNorm prologue arguments (9 .. 13): off, or (weight vid or
 * -1, eps, add_one, norm_dtype or -1). */
static void arg_norm(pt_node *n, bool on, int32_t w, double eps, bool add_one, int dt) {
    arg_lit(&n->args[9], PT_ARG_BOOL, on);
    arg_tensor(&n->args[10], w);
    arg_lit(&n->args[11], PT_ARG_FLOAT, eps);
    arg_lit(&n->args[12], PT_ARG_BOOL, add_one);
    if (dt >= 0) arg_lit(&n->args[13], PT_ARG_DTYPE, dt);
}

/* A node of op with nargs arguments (filled by the caller) and outputs outs. */
static pt_node *add_node(pt_graph *g, pt_op op, int nargs, const int32_t *outs, int nout) {
    pt_node *n = tg_node(g, op, nargs, nout, outs);
    g->outputs = pt_realloc(g->outputs, (size_t)(g->noutputs + nout) * sizeof *g->outputs);
    for (int i = 0; i < nout; i++) g->outputs[g->noutputs++] = (pt_user_output){{outs[i], 0, 0}, PT_V_TENSOR};
    return n;
}

/* Run g; on success copy output i into got[i] (as doubles, numel entries
 * each).  Returns the status; the message in *err. */
static petrel_status run_graph(const pt_graph *g, double **got, pt_err *err) {
    pt_exec ex;
    petrel_status st = pt_graph_verify(g, err);
    if (st != PETREL_OK) return st;
    if ((st = pt_exec_init(&ex, g, err)) != PETREL_OK) return st;
    st = pt_exec_run(&ex);
    for (int i = 0; st == PETREL_OK && i < g->noutputs; i++) {
        pt_rvalue tmp;
        const pt_rvalue *v;
        if ((st = pt_exec_output(&ex, i, &tmp, &v)) != PETREL_OK) break;
        const pt_tensor *t = &v->t;
        int64_t idx[PETREL_MAX_RANK] = {0}, e = 0, n = pt_numel(t);
        got[i] = malloc(sizeof(double) * (size_t)(n ? n : 1));
        for (; e < n; e++) {
            got[i][e] = pt_load_f64(pt_at(t, idx), t->dtype);
            pt_next_index(idx, t->shape, t->rank);
        }
    }
    pt_exec_free(&ex);
    return st;
}

/* ---- a quantized weight and its reference dequantization ----------------------- */

typedef struct qw {
    int64_t N, K, G;
    tbuf codes, scales, zeros; /* zeros: rank 0 when the format has none */
    bool has_zeros;
    double *w; /* (N, K) dequantized here */
} qw;

static qw qw_random(const fmt_def *f, int64_t N, int64_t K, int64_t G, petrel_dtype sdt) {
    qw q = {.N = N, .K = K, .G = G};
    q.codes = tb_new(PETREL_DTYPE_U8, 2, (int64_t[]){N, K * f->bits / 8});
    for (int64_t i = 0; i < tb_numel(&q.codes); i++) q.codes.data[i] = (uint8_t)rng_next();
    q.scales = tb_new(f->fp4 ? PETREL_DTYPE_U8 : sdt, 2, (int64_t[]){N, K / G});
    for (int64_t i = 0; i < tb_numel(&q.scales); i++) {
        if (f->fp4)
            q.scales.data[i] = (uint8_t)rng_int(1, 0x7e); /* positive, finite, subnormals included */
        else
            tb_set(&q.scales, i, rng_uniform(0.002, 0.05));
    }
    if (f->asym) {
        q.has_zeros = true;
        q.zeros = tb_new(PETREL_DTYPE_I8, 2, (int64_t[]){N, K / G});
        for (int64_t i = 0; i < tb_numel(&q.zeros); i++) tb_set(&q.zeros, i, rng_int(f->qmin, f->qmax));
    } else if (f->fp4) {
        q.has_zeros = true;
        q.zeros = tb_new(PETREL_DTYPE_F32, 1, (int64_t[]){1});
        tb_set(&q.zeros, 0, rng_uniform(0.001, 0.01));
    }
    /* ops.def: W = (q - zp) * s, q = u + qmin; nvfp4: e2m1(u) * e4m3(s) * t */
    q.w = malloc(sizeof(double) * (size_t)(N * K));
    int64_t cols = K * f->bits / 8;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            unsigned u = ref_code(q.codes.data + n * cols, k, f->bits);
            int64_t gi = n * (K / G) + k / G;
            if (f->fp4)
                q.w[n * K + k] = ref_e2m1(u) * ref_e4m3(q.scales.data[gi]) * tb_get(&q.zeros, 0);
            else
                q.w[n * K + k] = ((int)u + f->qmin - (f->asym ? tb_get(&q.zeros, gi) : 0)) * tb_get(&q.scales, gi);
        }
    return q;
}

static void qw_free(qw *q) {
    free(q->codes.data);
    free(q->scales.data);
    free(q->zeros.data);
    free(q->w);
}

/* y (M, N) = x (M, K) @ W^T in double. */
static double *ref_matmul(const tbuf *x, const qw *q, int64_t M) {
    double *y = malloc(sizeof(double) * (size_t)(M * q->N + 1));
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < q->N; n++) {
            double s = 0;
            for (int64_t k = 0; k < q->K; k++) s += tb_get(x, m * q->K + k) * q->w[n * q->K + k];
            y[m * q->N + n] = s;
        }
    return y;
}

/* Relative L2 distance; NaN anywhere makes it infinite. */
static double rel_l2(const double *got, const double *want, int64_t n) {
    double d = 0, w = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) return INFINITY;
        d += (got[i] - want[i]) * (got[i] - want[i]);
        w += want[i] * want[i];
    }
    return w > 0 ? sqrt(d / w) : sqrt(d);
}

/* ---- 2. qlinear ------------------------------------------------------------------ */

enum { MODE_N1, MODE_N3, MODE_GATED, MODE_ADD, MODE_BIAS, MODE_COUNT };
static const char *const mode_names[MODE_COUNT] = {"n", "n", "gated", "add", "bias"};
static const char *const act_names[3] = {"silu", "gelu", "gelu_tanh"};

static double act(double v, int a) {
    switch (a) {
    case 0: return v / (1.0 + exp(-v));
    case 1: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    default: return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    }
}

typedef struct qcase {
    int fmt;
    int64_t G;
    int mode, act;
    petrel_dtype xdt, sdt;
    int xrank;            /* x (M, K) or (2, 3, K) */
    int64_t M;
} qcase;

static int cases_run, cases_fast, cases_avx2;

/* The paths a product can take: the reference loops, the fast kernels
 * (AVX-512 where the CPU has it, else AVX2), and the AVX2 kernels on a
 * CPU that has both (the AVX-512 loops switched off). */
enum { PATH_REF, PATH_FAST, PATH_AVX2 };
static const char *path_names[] = {"reference", "fast", "fast avx2"};


/* Set the hooks for path p (PATH_REF: every fast kernel off); back to
 * the defaults with PATH_FAST. */
static void use_path(int p) {
    cpu_fast_qmm_enable(p != PATH_REF);
    cpu_fast_qmm_avx512(p != PATH_AVX2);
    cpu_fast_gemm_avx512(p != PATH_AVX2);
}

/* Build qlinear over random operands, run it, compare every output. */
static void run_qlinear(const qcase *c, int path) {
    const fmt_def *f = &fmts[c->fmt];
    const int64_t K = 256, Ns[3] = {70, 24, 9};
    int nw = c->mode == MODE_N3 ? 3 : c->mode == MODE_GATED ? 2 : 1;
    int64_t xshape[3] = {2, 3, K};
    if (c->xrank == 2) xshape[0] = c->M, xshape[1] = K;
    tbuf x = tb_new(c->xdt, c->xrank, xshape);
    for (int64_t i = 0; i < tb_numel(&x); i++) tb_set(&x, i, rng_uniform(-1, 1));
    qw ws[3];
    for (int i = 0; i < nw; i++) ws[i] = qw_random(f, c->mode == MODE_GATED ? Ns[0] : Ns[i], K, c->G, c->sdt);
    int64_t M = c->M;
    tbuf res = {0};
    int64_t yshape[3];
    memcpy(yshape, xshape, sizeof yshape);
    yshape[c->xrank - 1] = Ns[0];
    if (c->mode == MODE_ADD) {
        res = tb_new(c->xdt, c->xrank, yshape);
        for (int64_t i = 0; i < tb_numel(&res); i++) tb_set(&res, i, rng_uniform(-2, 2));
    } else if (c->mode == MODE_BIAS) { /* one bias (N), broadcast over the rows */
        res = tb_new(c->xdt, 1, &Ns[0]);
        for (int64_t i = 0; i < tb_numel(&res); i++) tb_set(&res, i, rng_uniform(-2, 2));
    }

    pt_graph g;
    tg_init(&g);
    int32_t xv = value(&g, "x", &x, 0, 0, NULL), cv[3], sv[3], zv[3], outs[3];
    for (int i = 0; i < nw; i++) {
        cv[i] = value(&g, "codes", &ws[i].codes, 0, 0, NULL);
        sv[i] = value(&g, "scales", &ws[i].scales, 0, 0, NULL);
        zv[i] = ws[i].has_zeros ? value(&g, "zeros", &ws[i].zeros, 0, 0, NULL) : -1;
    }
    int32_t rv = c->mode == MODE_ADD ? value(&g, "residual", &res, 0, 0, NULL)
                 : c->mode == MODE_BIAS ? value(&g, "bias", &res, 0, 0, NULL)
                                        : -1;
    int nout = c->mode == MODE_N3 ? 3 : 1;
    for (int i = 0; i < nout; i++) {
        yshape[c->xrank - 1] = ws[i].N;
        outs[i] = value(&g, i == 0 ? "y" : i == 1 ? "y1" : "y2", NULL, c->xdt, c->xrank, yshape);
    }
    pt_node *n = add_node(&g, PETREL_OP_PETREL_QLINEAR, 14, outs, nout);
    arg_tensor(&n->args[0], xv);
    arg_tensors(&n->args[1], cv, nw);
    arg_tensors(&n->args[2], sv, nw);
    arg_tensors(&n->args[3], zv, ws[0].has_zeros ? nw : 0);
    arg_tensor(&n->args[4], rv);
    arg_str(&n->args[5], f->name);
    arg_int(&n->args[6], c->G);
    arg_str(&n->args[7], mode_names[c->mode]);
    arg_str(&n->args[8], act_names[c->act]);
    arg_norm(n, false, -1, 1e-6, false, -1);

    /* does the fast kernel take it? (what cpu_fast_qmm_ok must say on an AVX-512 or AVX2 CPU) */
    int e = 8 / f->bits;
    bool fits = K % (16 * e) == 0 && (c->G % (16 * e) == 0 || (e > 1 && c->G == 8 * e));
    cpu_qweight probe = {.fmt = c->fmt, .N = 1, .K = K, .G = c->G, .sdt = ws[0].scales.dt, .s_cs = 1, .z_cs = 1};
    bool simd = fast_have_avx512() || fast_have_avx2();
    use_path(path);
    CHECK(cpu_fast_qmm_ok(&probe) == (path != PATH_REF && simd && fits), "%s G=%lld: cpu_fast_qmm_ok says %d",
          f->name, (long long)c->G, cpu_fast_qmm_ok(&probe));
    cases_fast += cpu_fast_qmm_ok(&probe);
    cases_avx2 += path == PATH_AVX2 && cpu_fast_qmm_ok(&probe);

    double *got[3] = {NULL, NULL, NULL};
    pt_err err = {{0}};
    petrel_status st = run_graph(&g, got, &err);
    use_path(PATH_FAST);
    char what[160];
    snprintf(what, sizeof what, "qlinear %s G=%lld mode=%s%s%s x=%s scales=%s M=%lld %s", f->name, (long long)c->G,
             mode_names[c->mode], c->mode == MODE_N3 ? "(3)" : "", c->mode == MODE_GATED ? act_names[c->act] : "",
             petrel_dtype_name(c->xdt), petrel_dtype_name(ws[0].scales.dt), (long long)M, path_names[path]);
    CHECK(st == PETREL_OK, "%s: %s", what, err.msg);
    cases_run++;
    double tol = c->xdt == PETREL_DTYPE_F32 ? 1e-5 : 1e-3;
    for (int i = 0; st == PETREL_OK && i < nout; i++) {
        int64_t N = ws[i].N;
        double *want = ref_matmul(&x, &ws[i], M);
        if (c->mode == MODE_GATED) {
            double *up = ref_matmul(&x, &ws[1], M);
            for (int64_t e2 = 0; e2 < M * N; e2++)
                want[e2] = round_to(act(round_to(want[e2], c->xdt), c->act), c->xdt) * round_to(up[e2], c->xdt);
            free(up);
        } else if (c->mode == MODE_ADD) {
            for (int64_t e2 = 0; e2 < M * N; e2++) want[e2] = tb_get(&res, e2) + round_to(want[e2], c->xdt);
        } else if (c->mode == MODE_BIAS) { /* inside the one rounding, as aten.linear's bias */
            for (int64_t e2 = 0; e2 < M * N; e2++) want[e2] += tb_get(&res, e2 % N);
        }
        for (int64_t e2 = 0; e2 < M * N; e2++) want[e2] = round_to(want[e2], c->xdt);
        double d = rel_l2(got[i], want, M * N);
        CHECK(d <= tol, "%s: output %d relative L2 %.3g > %g", what, i, d, tol);
        free(want);
    }
    for (int i = 0; i < 3; i++) free(got[i]);
    for (int i = 0; i < nw; i++) qw_free(&ws[i]);
    free(x.data);
    free(res.data);
    pt_graph_free(&g);
}

/* Group sizes per format: ones the fast kernels take (whole blocks, half
 * blocks) and, for the integer formats, one they leave to the reference. */
static int groups_of(int fmt, int64_t *gs) {
    static const int64_t g8[] = {16, 32, 128, 8}, g4[] = {16, 32, 64, 8}, g2[] = {32, 64, 128, 16}, gf[] = {16};
    const int64_t *src = fmt <= 1 ? g8 : fmt <= 3 ? g4 : fmt <= 5 ? g2 : gf;
    int n = fmt == 6 ? 1 : 4;
    memcpy(gs, src, sizeof(int64_t) * (size_t)n);
    return n;
}

static void test_qlinear(void) {
    static const petrel_dtype dts[3] = {PETREL_DTYPE_F32, PETREL_DTYPE_BF16, PETREL_DTYPE_F16};
    for (int f = 0; f < NFMTS; f++) {
        int64_t gs[4];
        int ng = groups_of(f, gs);
        for (int gi = 0; gi < ng; gi++)
            for (int mode = 0; mode < MODE_COUNT; mode++)
                for (int xi = 0; xi < 3; xi++)
                    for (int si = 0; si < 3; si++) {
                        /* every scale dtype for the plain linear, the matching one otherwise */
                        if (mode != MODE_N1 && si != xi) continue;
                        for (int shape = 0; shape < 2; shape++) {
                            qcase c = {.fmt = f, .G = gs[gi], .mode = mode, .act = (gi + xi + shape) % 3,
                                       .xdt = dts[xi], .sdt = dts[si], .xrank = shape ? 3 : 2, .M = shape ? 6 : 1};
                            run_qlinear(&c, PATH_REF);
                            run_qlinear(&c, PATH_FAST);
                            if (fast_have_avx2() && fast_have_avx512()) run_qlinear(&c, PATH_AVX2);
                        }
                    }
    }
}

/* The RMSNorm prologue: qlinear(x, norm=True, ...) must equal qlinear over
 * petrel.rms_norm(x, ...) to the bit (ops.def: exactly that op, rounded to
 * x's dtype), in modes n and gated, on both paths. */
static void run_qlinear_norm(const fmt_def *f, int64_t G, int mode, petrel_dtype xdt, int variant, int xrank,
                             int path) {
    const int64_t K = 256, Ns[3] = {40, 24, 9};
    int nw = mode == MODE_N3 ? 3 : 2, nout = mode == MODE_N3 ? 3 : 1;
    int64_t xshape[3] = {2, 3, K}, yshape[3] = {2, 3, 0};
    if (xrank == 2) xshape[0] = 1, xshape[1] = K, yshape[0] = 1;
    tbuf x = tb_new(xdt, xrank, xshape), nwt = tb_new(xdt, 1, (int64_t[]){K});
    for (int64_t i = 0; i < tb_numel(&x); i++) tb_set(&x, i, rng_uniform(-3, 3));
    for (int64_t i = 0; i < K; i++) tb_set(&nwt, i, rng_uniform(-1.5, 1.5));
    /* Llama's norm (n rounded to x's dtype, then * w) or Gemma's (in float, * (1 + w)) */
    double eps = variant ? 1e-6 : 1e-5;
    bool add_one = variant != 0;
    int ndt = variant ? -1 : (int)xdt;
    qw ws[3];
    for (int i = 0; i < nw; i++) ws[i] = qw_random(f, mode == MODE_GATED ? Ns[0] : Ns[i], K, G, xdt);
    double *got[2][4] = {{NULL}};
    use_path(path);
    for (int folded = 0; folded < 2; folded++) {
        pt_graph g;
        tg_init(&g);
        int32_t xv = value(&g, "x", &x, 0, 0, NULL), wv = value(&g, "norm_w", &nwt, 0, 0, NULL), cv[3], sv[3], zv[3];
        for (int i = 0; i < nw; i++) {
            cv[i] = value(&g, "codes", &ws[i].codes, 0, 0, NULL);
            sv[i] = value(&g, "scales", &ws[i].scales, 0, 0, NULL);
            zv[i] = ws[i].has_zeros ? value(&g, "zeros", &ws[i].zeros, 0, 0, NULL) : -1;
        }
        int32_t in = xv, outs[3];
        if (!folded) {
            in = value(&g, "xn", NULL, xdt, xrank, xshape);
            pt_node *r = add_node(&g, PETREL_OP_PETREL_RMS_NORM, 5, &in, 1);
            arg_tensor(&r->args[0], xv);
            arg_tensor(&r->args[1], wv);
            arg_lit(&r->args[2], PT_ARG_FLOAT, eps);
            arg_lit(&r->args[3], PT_ARG_BOOL, add_one);
            if (ndt >= 0) arg_lit(&r->args[4], PT_ARG_DTYPE, ndt);
        }
        for (int i = 0; i < nout; i++) {
            yshape[xrank - 1] = ws[i].N;
            outs[i] = value(&g, i == 0 ? "y" : i == 1 ? "y1" : "y2", NULL, xdt, xrank, yshape);
        }
        pt_node *n = add_node(&g, PETREL_OP_PETREL_QLINEAR, 14, outs, nout);
        arg_tensor(&n->args[0], in);
        arg_tensors(&n->args[1], cv, nw);
        arg_tensors(&n->args[2], sv, nw);
        arg_tensors(&n->args[3], zv, ws[0].has_zeros ? nw : 0);
        arg_str(&n->args[5], f->name);
        arg_int(&n->args[6], G);
        arg_str(&n->args[7], mode_names[mode]);
        arg_str(&n->args[8], "silu");
        arg_norm(n, folded, folded ? wv : -1, folded ? eps : 1e-6, folded && add_one, folded ? ndt : -1);
        pt_err err = {{0}};
        petrel_status st = run_graph(&g, got[folded], &err);
        CHECK(st == PETREL_OK, "qlinear norm %s %s %s: %s", f->name, mode_names[mode], petrel_dtype_name(xdt), err.msg);
        pt_graph_free(&g);
    }
    use_path(PATH_FAST);
    for (int i = 0; i < nout && got[0][1 + i] && got[1][i]; i++) {
        int64_t count = tb_numel(&x) / K * ws[i].N, bad = 0;
        for (int64_t e = 0; e < count; e++) bad += memcmp(&got[0][1 + i][e], &got[1][i][e], sizeof(double)) != 0;
        CHECK(bad == 0, "qlinear %s G=%lld mode=%s x=%s norm variant %d %s: output %d differs from rms_norm then "
              "qlinear in %lld of %lld values", f->name, (long long)G, mode_names[mode], petrel_dtype_name(xdt),
              variant, path_names[path], i, (long long)bad, (long long)count);
    }
    cases_run++;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++) free(got[k][i]);
    for (int i = 0; i < nw; i++) qw_free(&ws[i]);
    free(x.data);
    free(nwt.data);
}

static void test_qlinear_norm(void) {
    static const int fs[2] = {2, 6}; /* int4 g32, nvfp4 */
    static const petrel_dtype dts[2] = {PETREL_DTYPE_F32, PETREL_DTYPE_BF16};
    for (int fi = 0; fi < 2; fi++)
        for (int mode = MODE_N3; mode <= MODE_GATED; mode++)
            for (int di = 0; di < 2; di++)
                for (int variant = 0; variant < 2; variant++)
                    for (int xrank = 2; xrank <= 3; xrank++)
                        for (int path = PATH_REF; path <= PATH_AVX2; path++)
                            if (path != PATH_AVX2 || (fast_have_avx2() && fast_have_avx512()))
                                run_qlinear_norm(&fmts[fs[fi]], fmts[fs[fi]].fp4 ? 16 : 32, mode, dts[di], variant,
                                                 xrank, path);
}

/* ---- qembedding ------------------------------------------------------------------ */

static void test_qembedding(void) {
    static const petrel_dtype dts[3] = {PETREL_DTYPE_F32, PETREL_DTYPE_BF16, PETREL_DTYPE_F16};
    for (int f = 0; f < NFMTS; f++)
        for (int di = 0; di < 3; di++) {
            const int64_t V = 50, K = 128, G = fmts[f].fp4 ? 16 : 32;
            qw w = qw_random(&fmts[f], V, K, G, dts[di]);
            tbuf ind = tb_new(PETREL_DTYPE_I64, 2, (int64_t[]){2, 3});
            int64_t rows[6] = {0, 49, 7, -1, 23, -50}; /* negative ones wrap, as embedding's do */
            memcpy(ind.data, rows, sizeof rows);
            pt_graph g;
            tg_init(&g);
            int32_t cv = value(&g, "codes", &w.codes, 0, 0, NULL), sv = value(&g, "scales", &w.scales, 0, 0, NULL);
            int32_t zv = w.has_zeros ? value(&g, "zeros", &w.zeros, 0, 0, NULL) : -1;
            int32_t iv = value(&g, "indices", &ind, 0, 0, NULL);
            int32_t out = value(&g, "emb", NULL, dts[di], 3, (int64_t[]){2, 3, K});
            pt_node *n = add_node(&g, PETREL_OP_PETREL_QEMBEDDING, 6, &out, 1);
            arg_tensor(&n->args[0], cv);
            arg_tensor(&n->args[1], sv);
            arg_tensors(&n->args[2], &zv, w.has_zeros ? 1 : 0);
            arg_tensor(&n->args[3], iv);
            arg_str(&n->args[4], fmts[f].name);
            arg_int(&n->args[5], G);
            double *got = NULL;
            pt_err err = {{0}};
            petrel_status st = run_graph(&g, &got, &err);
            CHECK(st == PETREL_OK, "qembedding %s %s: %s", fmts[f].name, petrel_dtype_name(dts[di]), err.msg);
            int bad = 0;
            for (int64_t r = 0; st == PETREL_OK && r < 6; r++) {
                int64_t row = rows[r] < 0 ? rows[r] + V : rows[r];
                for (int64_t k = 0; k < K; k++)
                    bad += !(got[r * K + k] == round_to(w.w[row * K + k], dts[di]));
            }
            CHECK(bad == 0, "qembedding %s %s: %d values differ from the dequantized rows", fmts[f].name,
                  petrel_dtype_name(dts[di]), bad);
            free(got);
            free(ind.data);
            qw_free(&w);
            pt_graph_free(&g);
        }
}

/* ---- 2b. experts -------------------------------------------------------------------- */

static int expert_runs;

/* x (T, K) routed by ids to E experts of (N, K): qexpert_linear over the
 * quantized weight (fmt >= 0; the E * N rows of one random qw, viewed as
 * (E, N, ...)) or expert_linear over a float one (fmt < 0, dtype xdt);
 * every row against its expert's dequantized matrix in double. */
static void run_expert(int fmt, int64_t G, petrel_dtype xdt, int64_t T, int path, bool xt) {
    const int64_t E = 5, N = 70, K = 256;
    const fmt_def *f = fmt >= 0 ? &fmts[fmt] : NULL;
    tbuf x = tb_new(xdt, 2, (int64_t[]){T, K}), ids = tb_new(PETREL_DTYPE_I64, 1, (int64_t[]){T});
    for (int64_t i = 0; i < tb_numel(&x); i++) tb_set(&x, i, rng_uniform(-1, 1));
    /* experts 0 and 3 only for one row (a repeat and a negative id then), expert 2 never */
    static const int64_t route[] = {1, 4, -4, 1, 3, 4, -1, 1, 0, -5, 4, 1, 3};
    for (int64_t t = 0; t < T; t++) ((int64_t *)ids.data)[t] = T == 1 ? rng_int(-5, 4) : route[t % 13];
    qw q = {0};
    tbuf wf = {0};
    double *wd; /* (E * N, K) the weights in double */
    if (f) {
        q = qw_random(f, E * N, K, G, xdt);
        q.codes.rank = 3, q.codes.shape[2] = q.codes.shape[1], q.codes.shape[1] = N, q.codes.shape[0] = E;
        q.scales.rank = 3, q.scales.shape[2] = q.scales.shape[1], q.scales.shape[1] = N, q.scales.shape[0] = E;
        if (f->asym) q.zeros.rank = 3, q.zeros.shape[2] = q.zeros.shape[1], q.zeros.shape[1] = N, q.zeros.shape[0] = E;
        wd = q.w;
    } else {
        wf = tb_new(xdt, 3, (int64_t[]){E, N, K});
        wd = malloc(sizeof(double) * (size_t)(E * N * K));
        for (int64_t i = 0; i < E * N * K; i++) tb_set(&wf, i, rng_uniform(-0.1, 0.1)), wd[i] = tb_get(&wf, i);
    }
    pt_graph g;
    tg_init(&g);
    int32_t xv = value(&g, "x", &x, 0, 0, NULL), iv = value(&g, "ids", &ids, 0, 0, NULL);
    tbuf xs = {0}; /* xt: x's values stored (K, T), x a strided view of them */
    if (xt) {
        xs = tb_new(xdt, 2, (int64_t[]){K, T});
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++) tb_set(&xs, k * T + t, tb_get(&x, t * K + k));
        g.values[xv].data = xs.data;
        g.values[xv].strides[0] = 1, g.values[xv].strides[1] = T;
    }
    int32_t out = value(&g, "y", NULL, xdt, 2, (int64_t[]){T, N});
    pt_node *n;
    if (f) {
        int32_t cv = value(&g, "codes", &q.codes, 0, 0, NULL), sv = value(&g, "scales", &q.scales, 0, 0, NULL);
        int32_t zv = q.has_zeros ? value(&g, "zeros", &q.zeros, 0, 0, NULL) : -1;
        n = add_node(&g, PETREL_OP_PETREL_QEXPERT_LINEAR, 7, &out, 1);
        arg_tensor(&n->args[0], xv);
        arg_tensor(&n->args[1], iv);
        arg_tensor(&n->args[2], cv);
        arg_tensor(&n->args[3], sv);
        arg_tensors(&n->args[4], &zv, q.has_zeros ? 1 : 0);
        arg_str(&n->args[5], f->name);
        arg_int(&n->args[6], G);
    } else {
        n = add_node(&g, PETREL_OP_PETREL_EXPERT_LINEAR, 3, &out, 1);
        arg_tensor(&n->args[0], xv);
        arg_tensor(&n->args[1], value(&g, "weight", &wf, 0, 0, NULL));
        arg_tensor(&n->args[2], iv);
    }
    use_path(path);
    double *got = NULL;
    pt_err err = {{0}};
    petrel_status st = run_graph(&g, &got, &err);
    use_path(PATH_FAST);
    char what[160];
    snprintf(what, sizeof what, "%s %s G=%lld x=%s%s T=%lld %s", f ? "qexpert_linear" : "expert_linear",
             f ? f->name : "float", (long long)G, petrel_dtype_name(xdt), xt ? " (strided)" : "", (long long)T,
             path_names[path]);
    CHECK(st == PETREL_OK, "%s: %s", what, err.msg);
    expert_runs++;
    if (st == PETREL_OK) {
        double *want = malloc(sizeof(double) * (size_t)(T * N));
        for (int64_t t = 0; t < T; t++) {
            int64_t e = ((int64_t *)ids.data)[t];
            e = e < 0 ? e + E : e;
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) acc += tb_get(&x, t * K + k) * wd[(e * N + j) * K + k];
                want[t * N + j] = round_to(acc, xdt);
            }
        }
        double d = rel_l2(got, want, T * N);
        CHECK(d <= (xdt == PETREL_DTYPE_F32 ? 1e-5 : 1e-3), "%s: relative L2 %.3g", what, d);
        free(want);
    }
    free(got);
    /* an id out of bounds fails the node, naming it */
    ((int64_t *)ids.data)[T - 1] = E;
    st = run_graph(&g, &got, &err);
    CHECK(st != PETREL_OK && strstr(err.msg, "expert id 5 (row") && strstr(err.msg, "out of bounds for 5 experts"),
          "%s: id 5 of 5 experts: status %d, '%s'", what, st, err.msg);
    free(x.data);
    free(xs.data);
    free(ids.data);
    if (f) qw_free(&q);
    else free(wf.data), free(wd);
    pt_graph_free(&g);
}

static void test_experts(void) {
    static const petrel_dtype dts[2] = {PETREL_DTYPE_F32, PETREL_DTYPE_BF16};
    static const int64_t Ts[3] = {1, 8, 13};
    int paths = fast_have_avx2() && fast_have_avx512() ? 3 : 2;
    for (int f = -1; f < NFMTS; f++) {
        int64_t gs[4];
        int ng = f < 0 ? 1 : groups_of(f, gs);
        for (int gi = 0; gi < ng; gi += ng > 1 ? ng - 1 : 1) /* a group the fast kernels take, and the last */
            for (int xi = 0; xi < 2; xi++)
                for (int ti = 0; ti < 3; ti++)
                    for (int p = 0; p < paths; p++) run_expert(f, f < 0 ? 0 : gs[gi], dts[xi], Ts[ti], p, false);
        /* x a strided view (a transposed one): rows gathered element by element */
        run_expert(f, f < 0 ? 0 : gs[0], PETREL_DTYPE_BF16, 8, PATH_FAST, true);
    }
}

/* ---- 3. bad operands ------------------------------------------------------------- */

typedef enum bad_kind {
    BAD_FORMAT, BAD_GROUP, BAD_NVFP4_GROUP, BAD_CODES, BAD_SCALES, BAD_SCALE_DTYPE, BAD_NO_ZEROS, BAD_SYM_ZEROS,
    BAD_ZERO_SHAPE, BAD_MODE, BAD_ACT, BAD_COUNT_N, BAD_GATED_N, BAD_SCALES_COUNT, BAD_RESIDUAL, BAD_EMB_INDEX,
    BAD_ADD_NORM, BAD_BIAS, BAD_BIAS_NORM, BAD_KIND_COUNT
} bad_kind;

static const char *const bad_want[BAD_KIND_COUNT] = {
    "unknown format 'int3'",
    "K = 256 is not a multiple of group_size 48",
    "nvfp4 has groups of 16, got group_size 32",
    "codes[0] must be u8 (N, 128) for K = 256 in 4 bits, got u8 (8, 127)",
    "scales[0] must have shape (8, 8) (N, K / group_size), got (8, 4)",
    "scales[0] must be a float dtype, got i64",
    "format int4 needs one zeros entry per weight (1), got 0",
    "format int4s is symmetric: zeros must be empty, got 1 entries",
    "zeros[0] must be i8 (8, 8) like the scales, got i8 (8, 7)",
    "unknown mode 'sum' (n, gated, add or bias)",
    "unknown activation 'relu' (silu, gelu or gelu_tanh)",
    "mode n needs 1 weight (one per output), got 2",
    "gate and up weights differ in size (8 vs 5 rows)",
    "1 codes but 2 scales",
    "the residual does not fit the product",
    "index 50 is out of bounds for size 8",
    "mode add has no RMSNorm prologue",
    "the bias does not fit the product",
    "mode bias has no RMSNorm prologue",
};

static void test_bad(void) {
    const fmt_def *i4 = &fmts[2], *i4s = &fmts[3];
    for (int b = 0; b < BAD_KIND_COUNT; b++) {
        const fmt_def *f = b == BAD_SYM_ZEROS ? i4s : i4;
        int64_t K = 256, G = 32;
        qw w = qw_random(f, 8, K, G, PETREL_DTYPE_F32), w2 = qw_random(f, b == BAD_GATED_N ? 5 : 8, K, G, PETREL_DTYPE_F32);
        tbuf x = tb_new(PETREL_DTYPE_F32, 2, (int64_t[]){1, K});
        tbuf other = {0};
        tbuf ind = tb_new(PETREL_DTYPE_I64, 1, (int64_t[]){1});
        ((int64_t *)ind.data)[0] = 50;
        if (b == BAD_CODES) other = tb_new(PETREL_DTYPE_U8, 2, (int64_t[]){8, 127});
        if (b == BAD_SCALES) other = tb_new(PETREL_DTYPE_F32, 2, (int64_t[]){8, 4});
        if (b == BAD_SCALE_DTYPE) other = tb_new(PETREL_DTYPE_I64, 2, (int64_t[]){8, 8});
        if (b == BAD_ZERO_SHAPE) other = tb_new(PETREL_DTYPE_I8, 2, (int64_t[]){8, 7});
        if (b == BAD_SYM_ZEROS) other = tb_new(PETREL_DTYPE_I8, 2, (int64_t[]){8, 8});
        if (b == BAD_RESIDUAL) other = tb_new(PETREL_DTYPE_F32, 2, (int64_t[]){1, 7});
        if (b == BAD_ADD_NORM) other = tb_new(PETREL_DTYPE_F32, 2, (int64_t[]){1, 8});
        if (b == BAD_BIAS) other = tb_new(PETREL_DTYPE_F32, 1, (int64_t[]){9});
        if (b == BAD_BIAS_NORM) other = tb_new(PETREL_DTYPE_F32, 1, (int64_t[]){8});
        pt_graph g;
        tg_init(&g);
        int32_t xv = value(&g, "x", &x, 0, 0, NULL);
        int32_t cv[2] = {value(&g, "codes", b == BAD_CODES ? &other : &w.codes, 0, 0, NULL),
                         value(&g, "codes2", &w2.codes, 0, 0, NULL)};
        int32_t sv[2] = {value(&g, "scales", b == BAD_SCALES || b == BAD_SCALE_DTYPE ? &other : &w.scales, 0, 0, NULL),
                         value(&g, "scales2", &w2.scales, 0, 0, NULL)};
        int32_t zv[2] = {-1, -1};
        int nz = 0;
        if (b == BAD_SYM_ZEROS || b == BAD_ZERO_SHAPE) zv[0] = value(&g, "zeros", &other, 0, 0, NULL), nz = 1;
        else if (w.has_zeros && b != BAD_NO_ZEROS)
            zv[0] = value(&g, "zeros", &w.zeros, 0, 0, NULL), zv[1] = value(&g, "zeros2", &w2.zeros, 0, 0, NULL), nz = 1;
        int32_t out = value(&g, "y", NULL, PETREL_DTYPE_F32, 2, (int64_t[]){1, 8});
        pt_node *n;
        if (b == BAD_EMB_INDEX) {
            int32_t iv = value(&g, "indices", &ind, 0, 0, NULL);
            out = value(&g, "emb", NULL, PETREL_DTYPE_F32, 2, (int64_t[]){1, K});
            n = add_node(&g, PETREL_OP_PETREL_QEMBEDDING, 6, &out, 1);
            arg_tensor(&n->args[0], cv[0]);
            arg_tensor(&n->args[1], sv[0]);
            arg_tensors(&n->args[2], zv, 1);
            arg_tensor(&n->args[3], iv);
            arg_str(&n->args[4], f->name);
            arg_int(&n->args[5], G);
        } else {
            int nw = b == BAD_COUNT_N || b == BAD_GATED_N ? 2 : 1, mode_gated = b == BAD_GATED_N || b == BAD_ACT;
            if (b == BAD_GATED_N) nz = 2;
            bool add = b == BAD_RESIDUAL || b == BAD_ADD_NORM, bias = b == BAD_BIAS || b == BAD_BIAS_NORM;
            n = add_node(&g, PETREL_OP_PETREL_QLINEAR, 14, &out, 1);
            arg_tensor(&n->args[0], xv);
            arg_tensors(&n->args[1], cv, b == BAD_ACT ? 2 : nw);
            arg_tensors(&n->args[2], sv, b == BAD_SCALES_COUNT || b == BAD_ACT ? 2 : nw);
            arg_tensors(&n->args[3], zv, b == BAD_ACT ? 2 : nz);
            arg_tensor(&n->args[4], add || bias ? value(&g, "residual", &other, 0, 0, NULL) : -1);
            arg_str(&n->args[5], b == BAD_FORMAT ? "int3" : b == BAD_NVFP4_GROUP ? "nvfp4" : f->name);
            arg_int(&n->args[6], b == BAD_GROUP ? 48 : G);
            arg_str(&n->args[7], b == BAD_MODE ? "sum" : mode_gated ? "gated" : add ? "add" : bias ? "bias" : "n");
            arg_str(&n->args[8], b == BAD_ACT ? "relu" : "silu");
            arg_norm(n, b == BAD_ADD_NORM || b == BAD_BIAS_NORM, -1, 1e-6, false, -1);
        }
        double *got[1] = {NULL};
        pt_err err = {{0}};
        petrel_status st = run_graph(&g, got, &err);
        CHECK(st != PETREL_OK && strstr(err.msg, bad_want[b]), "bad case %d: status %d, message '%s', want '%s'", b, st,
              err.msg, bad_want[b]);
        free(got[0]);
        free(x.data);
        free(other.data);
        free(ind.data);
        qw_free(&w);
        qw_free(&w2);
        pt_graph_free(&g);
    }
}

int main(void) {
    test_helpers();
    test_qlinear();
    test_qlinear_norm();
    test_qembedding();
    test_experts();
    test_bad();
    printf("test_qmatmul: %d qlinear runs (%d on the fast kernels, %d of them on the AVX2 ones), %d expert runs, "
           "%d failure%s\n",
           cases_run, cases_fast, cases_avx2, expert_runs, failures, failures == 1 ? "" : "s");
    return failures != 0;
}
