/*
** quant.c -- weight quantization (`petrel compile --quant`): the linears
** whose weight is a 2-D program constant become petrel.qlinear, and with
** `embedding` the embeddings become petrel.qembedding (formats, layout and
** meaning: ops.def; formulas: core/quant.h).
**
**   aten.linear            -> qlinear mode "n", one weight; with a bias
**                             mode "bias" (the bias as its residual), for a
**                             backend that has that kernel (opts.bias)
**   petrel.linear_n        -> qlinear mode "n" (split when only some of its
**                             weights can be quantized)
**   petrel.gated_linear    -> qlinear mode "gated" (both weights or neither)
**   petrel.linear_add      -> qlinear mode "add"
**   aten.embedding         -> qembedding
**   petrel.expert_linear   -> qexpert_linear (an MoE layer's experts: the
**                             weight (E, N, K) quantized as E * N rows)
**
** The RMSNorm prologue of a linear_n or gated_linear (fuse.c folds it in)
** goes along to its qlinear, both halves of a split linear_n keeping it.
** A weight read by several nodes (a tied embedding and LM head) is
** quantized once and its codes, scales and zeros serve every reader.  A
** float weight that nothing reads afterwards leaves the program.  Weights
** stay float when a --quant-skip pattern matches their name, when K is not
** a multiple of the group size, when they are not float or not finite, and
** when their linear has a bias the target backend's kernels do not take;
** the result says which and why.
** The new constants' bytes are owned by the result until pc_quant_free
** (after the program is written).  Layer: compiler.
*/
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/quant.h"
#include "compiler.h"

/* ---- the scheme ------------------------------------------------------------ */

petrel_status pc_quant_parse(const char *scheme, pc_quant_opts *o, pt_err *err) {
    static const char *help = "int8, int4 or int2, optionally :sym and :gs=32|64|128, or nvfp4";
    char buf[64];
    if (!scheme || strlen(scheme) >= sizeof buf)
        return pt_fail(err, PETREL_ERR_INVALID_ARG, "quantization scheme '%s': expected %s", scheme ? scheme : "",
                       help);
    snprintf(buf, sizeof buf, "%s", scheme);
    char *save = NULL, *base = strtok_r(buf, ":", &save);
    int bits = !base ? 0 : !strcmp(base, "int8") ? 8 : !strcmp(base, "int4") ? 4 : !strcmp(base, "int2") ? 2 : 0;
    bool nv = base && !strcmp(base, "nvfp4"), sym = false;
    int gs = nv ? PT_NVFP4_GROUP : 32;
    if (!bits && !nv)
        return pt_fail(err, PETREL_ERR_INVALID_ARG, "quantization scheme '%s': unknown format '%s' (expected %s)",
                       scheme, base ? base : "", help);
    bool seen_gs = false;
    for (char *t = strtok_r(NULL, ":", &save); t; t = strtok_r(NULL, ":", &save)) {
        if (nv) return pt_fail(err, PETREL_ERR_INVALID_ARG, "quantization scheme '%s': nvfp4 takes no options", scheme);
        if (!strcmp(t, "sym") && !sym) {
            sym = true;
        } else if (!strncmp(t, "gs=", 3) && !seen_gs) {
            seen_gs = true;
            gs = !strcmp(t + 3, "32") ? 32 : !strcmp(t + 3, "64") ? 64 : !strcmp(t + 3, "128") ? 128 : 0;
            if (!gs)
                return pt_fail(err, PETREL_ERR_INVALID_ARG,
                               "quantization scheme '%s': group size '%s' (expected 32, 64 or 128)", scheme, t + 3);
        } else {
            return pt_fail(err, PETREL_ERR_INVALID_ARG, "quantization scheme '%s': bad option '%s' (expected %s)",
                           scheme, t, help);
        }
    }
    if (strchr(":", scheme[strlen(scheme) - 1]) || strstr(scheme, "::"))
        return pt_fail(err, PETREL_ERR_INVALID_ARG, "quantization scheme '%s': empty option (expected %s)", scheme,
                       help);
    o->format = nv ? PT_QFMT_NVFP4
                   : bits == 8 ? (sym ? PT_QFMT_INT8S : PT_QFMT_INT8)
                   : bits == 4 ? (sym ? PT_QFMT_INT4S : PT_QFMT_INT4)
                               : (sym ? PT_QFMT_INT2S : PT_QFMT_INT2);
    o->group_size = gs;
    return PETREL_OK;
}

/* ---- weights ---------------------------------------------------------------- */

/* One float weight to quantize (a storage view; tied readers share it). */
typedef struct qz_weight {
    int32_t vid;                   /* a value holding it (the first seen) */
    int64_t n, k;                  /* rows (all experts') and K */
    int64_t e;                     /* experts of a 3-D weight (E, N, K); 1 for 2-D */
    bool wanted;                   /* a node that will be rewritten reads it */
    bool done;                     /* quantized (false: not finite, stays float) */
    bool used;                     /* a rewritten node reads its codes */
    int32_t codes, scales, zeros;  /* new value ids; zeros -1 when symmetric */
    int64_t codes_bytes, scales_bytes, zeros_bytes;
    uint8_t *bytes;                /* codes | scales | zeros, owned by the result */
} qz_weight;

typedef struct qz {
    pt_graph *g;
    const pc_quant_opts *o;
    pc_quant_result *r;
    qz_weight *w;
    int32_t nw, capw;
    int32_t *wof;                  /* (nvalues) weight index of a value, -1 none */
    bool *noted;                   /* (nvalues) reported as kept in float */
    bool oom;
} qz;

static bool same_view(const pt_value *a, const pt_value *b) {
    if (a->data != b->data || a->dtype != b->dtype || a->storage_offset != b->storage_offset || a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d].lit != b->shape[d].lit || a->strides[d] != b->strides[d]) return false;
    return true;
}

static const char *wname(const pt_value *v) { return v->fqn ? v->fqn : v->name; }

/* Note a weight kept in float, once per weight. */
static void kept(qz *q, int32_t vid, const char *why) {
    if (q->noted[vid]) return;
    q->noted[vid] = true;
    char item[256];
    snprintf(item, sizeof item, "%s%s (%s)", q->r->kept ? "; " : "", wname(&q->g->values[vid]), why);
    q->r->kept++;
    /* past the buffer: one "; ..." says the list goes on */
    size_t len = strlen(q->r->kept_why), cap = sizeof q->r->kept_why - 6;
    if (len + strlen(item) < cap) memcpy(q->r->kept_why + len, item, strlen(item) + 1);
    else if (len < cap + 1 && (len < 3 || strcmp(q->r->kept_why + len - 3, "...")))
        memcpy(q->r->kept_why + len, "; ...", 6);
}

/* Why weight `vid` cannot be quantized (NULL: it can; "" when it is no
 * program constant at all, which is not worth a note). */
static const char *refuse(const qz *q, int32_t vid, char *buf, size_t cap) {
    const pt_value *v = &q->g->values[vid];
    if ((v->src != PT_SRC_PARAM && v->src != PT_SRC_CONST) || !v->data || v->kind != PT_V_TENSOR || v->rank < 2 ||
        v->rank > 3)
        return ""; /* not a weight: nothing to report */
    for (int d = 0; d < v->rank; d++)
        if (v->shape[d].expr) return "";
    if (v->dtype != PETREL_DTYPE_F32 && v->dtype != PETREL_DTYPE_BF16 && v->dtype != PETREL_DTYPE_F16)
        return "not f32, bf16 or f16";
    for (int i = 0; i < q->o->nskip; i++)
        if (fnmatch(q->o->skip[i], wname(v), 0) == 0) return "--quant-skip";
    int64_t K = v->shape[v->rank - 1].lit;
    if (K % q->o->group_size || K == 0) {
        snprintf(buf, cap, "K = %lld is not a multiple of %d", (long long)K, q->o->group_size);
        return buf;
    }
    return NULL;
}

/* The weight entry of value `vid` (added when new), or -1 out of memory. */
static int32_t weight_of(qz *q, int32_t vid) {
    if (q->wof[vid] >= 0) return q->wof[vid];
    const pt_value *v = &q->g->values[vid];
    for (int32_t i = 0; i < q->nw; i++)
        if (same_view(&q->g->values[q->w[i].vid], v)) return q->wof[vid] = i;
    if (q->nw == q->capw) {
        int32_t cap = q->capw ? q->capw * 2 : 64;
        qz_weight *nw = pt_realloc(q->w, (size_t)cap * sizeof *nw);
        if (!nw) return q->oom = true, -1;
        q->w = nw;
        q->capw = cap;
    }
    int64_t e = v->rank == 3 ? v->shape[0].lit : 1;
    q->w[q->nw] = (qz_weight){.vid = vid, .n = e * v->shape[v->rank - 2].lit, .k = v->shape[v->rank - 1].lit, .e = e,
                              .codes = -1, .scales = -1, .zeros = -1};
    return q->wof[vid] = q->nw++;
}

/* ---- which nodes ------------------------------------------------------------- */

/* The weight arguments of a node the pass rewrites: their value ids in
 * `vids` (at most 12, linear_n's bound), the count returned; 0 for any
 * other node.  *why is set when the node qualifies but must stay float as
 * a whole (a linear with a bias). */
static int node_weights(const qz *q, const pt_node *n, int32_t *vids, const char **why) {
    const pt_graph *g = q->g;
    *why = NULL;
    switch (n->op) {
    case PETREL_OP_LINEAR: {
        if (n->nout != 1 || n->args[1].kind != PT_ARG_TENSOR || n->args[0].kind != PT_ARG_TENSOR) return 0;
        const pt_value *x = &g->values[n->args[0].items[0].vid], *w = &g->values[n->args[1].items[0].vid];
        if (x->kind != PT_V_TENSOR || x->dtype != w->dtype) return 0;
        if (n->args[2].kind != PT_ARG_NONE && (!q->o->bias || n->args[2].kind != PT_ARG_TENSOR))
            *why = "linear with a bias: the backend has no quantized kernel for it";
        vids[0] = n->args[1].items[0].vid;
        return 1;
    }
    case PETREL_OP_PETREL_LINEAR_N:
        if (n->args[1].n > 12) return 0;
        for (int k = 0; k < n->args[1].n; k++) vids[k] = n->args[1].items[k].vid;
        return n->args[1].n;
    case PETREL_OP_PETREL_GATED_LINEAR:
        vids[0] = n->args[1].items[0].vid;
        vids[1] = n->args[2].items[0].vid;
        return 2;
    case PETREL_OP_PETREL_LINEAR_ADD: vids[0] = n->args[1].items[0].vid; return 1;
    case PETREL_OP_EMBEDDING:
        if (!q->o->embedding || n->args[0].kind != PT_ARG_TENSOR) return 0;
        vids[0] = n->args[0].items[0].vid;
        return 1;
    case PETREL_OP_PETREL_EXPERT_LINEAR:
        if (!q->o->experts) *why = "the backend has no quantized expert kernel";
        vids[0] = n->args[1].items[0].vid;
        return 1;
    case PETREL_OP_INDEX_TENSOR: { /* experts the backend could not take fused: reported */
        if (q->o->experts || n->args[0].kind != PT_ARG_TENSOR) return 0;
        const pt_value *w = &g->values[n->args[0].items[0].vid];
        if (w->rank != 3 || !w->data || !pt_dtype_is_float(w->dtype)) return 0;
        *why = "MoE experts: the backend has no expert kernel";
        vids[0] = n->args[0].items[0].vid;
        return 1;
    }
    default: return 0;
    }
}

/* Which of node n's weights will be quantized (ok[k]); false when none.
 * A gated linear needs both; a linear_n is split.  PLAN_FIRST: before
 * quantizing; PLAN_FINAL: after, a weight whose quantization failed is
 * refused; PLAN_REPORT: the same, noting each weight kept in float. */
enum { PLAN_FIRST, PLAN_FINAL, PLAN_REPORT };
static bool node_plan(qz *q, const pt_node *n, bool *ok, int stage) {
    int32_t vids[12];
    const char *whole;
    int nw = node_weights(q, n, vids, &whole);
    if (!nw) return false;
    int good = 0;
    for (int k = 0; k < nw; k++) {
        char buf[96];
        const char *why = whole ? whole : refuse(q, vids[k], buf, sizeof buf);
        if (!why && stage != PLAN_FIRST && q->w[q->wof[vids[k]]].wanted && !q->w[q->wof[vids[k]]].done)
            why = "not finite";
        ok[k] = !why;
        good += ok[k];
        if (why && *why && stage == PLAN_REPORT) kept(q, vids[k], why);
    }
    if (n->op == PETREL_OP_PETREL_GATED_LINEAR && good == 1) {
        for (int k = 0; k < nw; k++)
            if (ok[k] && stage == PLAN_REPORT) kept(q, vids[k], "its gated partner stays float");
        return false;
    }
    return good > 0;
}

/* ---- quantizing ---------------------------------------------------------------- */

/* Element offset of row `row` of a weight: (N, K), or (E, N, K) whose
 * rows are numbered expert by expert. */
static int64_t row_at(const pt_value *v, int64_t row) {
    if (v->rank == 2) return v->storage_offset + row * v->strides[0];
    int64_t n = v->shape[1].lit;
    return v->storage_offset + row / n * v->strides[0] + row % n * v->strides[1];
}

/* Element (row, col) of a float weight as f32. */
static float load_w(const pt_value *v, int64_t row, int64_t col) {
    int64_t i = row_at(v, row) + col * v->strides[v->rank - 1];
    switch (v->dtype) {
    case PETREL_DTYPE_BF16: { uint16_t h; memcpy(&h, v->data + i * 2, 2); return pt_bf16_to_f32(h); }
    case PETREL_DTYPE_F16: { uint16_t h; memcpy(&h, v->data + i * 2, 2); return pt_f16_to_f32(h); }
    default: { float f; memcpy(&f, v->data + i * 4, 4); return f; }
    }
}

/* Row `row` of v as f32 into out (K values). */
static void load_row(const pt_value *v, int64_t row, float *out) {
    int64_t K = v->shape[v->rank - 1].lit;
    bool dense = v->strides[v->rank - 1] == 1;
    if (v->dtype == PETREL_DTYPE_BF16 && dense) {
        const uint8_t *p = v->data + row_at(v, row) * 2;
        for (int64_t k = 0; k < K; k++) {
            uint16_t h;
            memcpy(&h, p + k * 2, 2);
            out[k] = pt_bf16_to_f32(h);
        }
    } else if (v->dtype == PETREL_DTYPE_F32 && dense) {
        memcpy(out, v->data + row_at(v, row) * 4, (size_t)K * 4);
    } else {
        for (int64_t k = 0; k < K; k++) out[k] = load_w(v, row, k);
    }
}

/* Quantize weight w into its own allocation.  False only when memory ran
 * out; a weight that is not finite is left with done == false. */
static bool quantize_one(qz *q, qz_weight *w) {
    const pt_value *v = &q->g->values[w->vid];
    pt_qfmt f = q->o->format;
    int G = q->o->group_size;
    petrel_dtype sdt = f == PT_QFMT_NVFP4 ? PETREL_DTYPE_U8 : v->dtype;
    w->codes_bytes = w->n * (w->k * pt_qfmt_bits(f) / 8);
    w->scales_bytes = w->n * (w->k / G) * (int64_t)petrel_dtype_size(sdt);
    w->zeros_bytes = f == PT_QFMT_NVFP4 ? 4 : pt_qsym(f) ? 0 : w->n * (w->k / G);
    float *row = pt_malloc((size_t)w->k * sizeof *row);
    w->bytes = pt_malloc((size_t)(w->codes_bytes + w->scales_bytes + w->zeros_bytes));
    if (!row || !w->bytes) {
        pt_free(row);
        pt_free(w->bytes);
        w->bytes = NULL;
        return false;
    }
    uint8_t *codes = w->bytes, *scales = codes + w->codes_bytes, *zeros = scales + w->scales_bytes;
    float t = 1.0f;
    bool finite = true;
    if (f == PT_QFMT_NVFP4) {
        float amax = 0.0f;
        for (int64_t r = 0; r < w->n && finite; r++) {
            load_row(v, r, row);
            for (int64_t k = 0; k < w->k; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
            finite = amax <= FLT_MAX;
        }
        t = pt_nvfp4_tensor_scale(amax);
        memcpy(zeros, &t, 4);
    }
    int64_t per_row = w->k * pt_qfmt_bits(f) / 8, groups = w->k / G;
    for (int64_t r = 0; r < w->n && finite; r++) {
        load_row(v, r, row);
        finite = pt_quant_row(f, G, v->dtype, row, w->k, t, codes + r * per_row, scales,
                              r * groups, f == PT_QFMT_NVFP4 || pt_qsym(f) ? NULL : (int8_t *)zeros + r * groups);
    }
    pt_free(row);
    if (!finite) {
        pt_free(w->bytes);
        w->bytes = NULL;
        return true;
    }
    q->r->blobs[q->r->nblobs++] = w->bytes;
    w->done = true;
    return true;
}

/* ---- graph edits ----------------------------------------------------------------- */

/* Append a constant tensor value of dtype dt over `data`: rank 2, (N, C)
 * or, for an experts' weight, (E, N, C); rank 1, (C). */
static int32_t add_const(qz *q, const qz_weight *w, const char *suffix, petrel_dtype dt, int rank, int64_t cols,
                         const uint8_t *data, int64_t bytes) {
    pt_graph *g = q->g;
    const pt_value *src = &g->values[w->vid];
    char name[512], fqn[512];
    snprintf(name, sizeof name, "%s_q%s", src->name, suffix);
    snprintf(fqn, sizeof fqn, "%s.q%s", wname(src), suffix);
    pt_value *v = &g->values[g->nvalues];
    memset(v, 0, sizeof *v);
    v->name = pt_strdup(name);
    v->fqn = pt_strdup(fqn);
    if (!v->name || !v->fqn) {
        pt_free(v->name);
        pt_free(v->fqn);
        q->oom = true;
        return -1;
    }
    v->kind = PT_V_TENSOR;
    v->src = src->src;
    v->dtype = dt;
    if (rank == 1) {
        v->rank = 1;
        v->shape[0].lit = cols;
        v->strides[0] = 1;
    } else {
        int64_t e = w->e, n = src->shape[src->rank - 2].lit; /* (E,) N, as the float weight */
        v->rank = src->rank;
        int d = 0;
        if (src->rank == 3) v->shape[d].lit = e, v->strides[d++] = n * cols;
        v->shape[d].lit = n, v->strides[d++] = cols;
        v->shape[d].lit = cols, v->strides[d] = 1;
    }
    v->data = data;
    v->data_bytes = bytes;
    return g->nvalues++;
}

static bool make_values(qz *q, qz_weight *w) {
    const pt_value *v = &q->g->values[w->vid];
    pt_qfmt f = q->o->format;
    int64_t groups = w->k / q->o->group_size;
    uint8_t *codes = w->bytes, *scales = codes + w->codes_bytes, *zeros = scales + w->scales_bytes;
    w->codes = add_const(q, w, "codes", PETREL_DTYPE_U8, 2, w->k * pt_qfmt_bits(f) / 8, codes, w->codes_bytes);
    w->scales = w->codes < 0 ? -1
                             : add_const(q, w, "scales", f == PT_QFMT_NVFP4 ? PETREL_DTYPE_U8 : v->dtype, 2, groups,
                                         scales, w->scales_bytes);
    if (w->scales >= 0 && w->zeros_bytes)
        w->zeros = f == PT_QFMT_NVFP4 ? add_const(q, w, "zeros", PETREL_DTYPE_F32, 1, 1, zeros, 4)
                                   : add_const(q, w, "zeros", PETREL_DTYPE_I8, 2, groups, zeros, w->zeros_bytes);
    return w->scales >= 0 && (!w->zeros_bytes || w->zeros >= 0);
}

static bool set_tensors(pt_arg *a, const int32_t *vids, int n) {
    memset(a, 0, sizeof *a);
    a->kind = PT_ARG_TENSORS;
    if (!n) return true;
    a->items = pt_calloc((size_t)n, sizeof *a->items);
    if (!a->items) return false;
    a->n = n;
    for (int k = 0; k < n; k++) a->items[k] = (pt_item){.vid = vids[k]};
    return true;
}

static bool set_tensor(pt_arg *a, int32_t vid) {
    memset(a, 0, sizeof *a);
    if (vid < 0) return true; /* None */
    a->kind = PT_ARG_TENSOR;
    a->items = pt_calloc(1, sizeof *a->items);
    if (!a->items) return false;
    a->n = 1;
    a->items[0] = (pt_item){.vid = vid};
    return true;
}

static bool set_str(pt_arg *a, const char *s) {
    memset(a, 0, sizeof *a);
    a->kind = PT_ARG_STRING;
    return (a->str = pt_strdup(s)) != NULL;
}

/* A literal int, bool (i) or float (f). */
static bool set_lit(pt_arg *a, pt_arg_kind kind, int64_t i, double f) {
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->items = pt_calloc(1, sizeof *a->items);
    if (!a->items) return false;
    a->n = 1;
    a->items[0] = (pt_item){.vid = -1, .i = i, .f = f};
    return true;
}

static bool set_int(pt_arg *a, int64_t i) { return set_lit(a, PT_ARG_INT, i, 0); }

/* A copy of src (its items and string). */
static bool copy_arg(pt_arg *a, const pt_arg *src) {
    *a = (pt_arg){.kind = src->kind, .fixed_len = src->fixed_len};
    if (src->n) {
        if (!(a->items = pt_malloc((size_t)src->n * sizeof *a->items))) return false;
        memcpy(a->items, src->items, (size_t)src->n * sizeof *a->items);
        a->n = src->n;
    }
    return !src->str || (a->str = pt_strdup(src->str)) != NULL;
}

/* qlinear's RMSNorm prologue arguments (norm ... norm_dtype, five) into
 * a: copies of the linear's (norm: its five), or off (norm NULL). */
static bool set_norm(pt_arg *a, const pt_arg *norm) {
    if (norm) {
        for (int k = 0; k < 5; k++)
            if (!copy_arg(&a[k], &norm[k])) return false;
        return true;
    }
    return set_lit(&a[0], PT_ARG_BOOL, 0, 0) && set_tensor(&a[1], -1) && set_lit(&a[2], PT_ARG_FLOAT, 0, 1e-6) &&
           set_lit(&a[3], PT_ARG_BOOL, 0, 0) && set_tensor(&a[4], -1);
}

static void free_args(pt_arg *args, int n) {
    for (int a = 0; a < n; a++) {
        pt_free(args[a].items);
        pt_free(args[a].str);
    }
    pt_free(args);
}

/* The arguments of the quantized op for weights vids[0..n) (all
 * quantized): x, codes, scales, zeros, residual, format, group_size,
 * mode, act and the RMSNorm prologue's five (copies of `norm`, or off when
 * NULL) for qlinear; codes, scales, zeros, indices (x), format, group_size
 * for qembedding; x, ids (residual), codes, scales, zeros, format,
 * group_size for qexpert_linear. */
static pt_arg *quant_args(const qz *q, pt_op op, int32_t x, const int32_t *vids, int n, int32_t residual,
                          const char *mode, const char *act, const pt_arg *norm, int *nargs) {
    int32_t c[12] = {0}, s[12] = {0}, z[12] = {0};
    int nz = 0;
    for (int k = 0; k < n; k++) {
        const qz_weight *w = &q->w[q->wof[vids[k]]];
        c[k] = w->codes;
        s[k] = w->scales;
        if (w->zeros >= 0) z[nz++] = w->zeros;
    }
    *nargs = op == PETREL_OP_PETREL_QLINEAR ? 14 : op == PETREL_OP_PETREL_QEXPERT_LINEAR ? 7 : 6;
    pt_arg *a = pt_calloc((size_t)*nargs, sizeof *a);
    if (!a) return NULL;
    const char *fmt = pt_qfmt_name(q->o->format);
    bool ok;
    if (op == PETREL_OP_PETREL_QLINEAR)
        ok = set_tensor(&a[0], x) && set_tensors(&a[1], c, n) && set_tensors(&a[2], s, n) &&
             set_tensors(&a[3], z, nz) && set_tensor(&a[4], residual) && set_str(&a[5], fmt) &&
             set_int(&a[6], q->o->group_size) && set_str(&a[7], mode) && set_str(&a[8], act) &&
             set_norm(&a[9], norm);
    else if (op == PETREL_OP_PETREL_QEXPERT_LINEAR)
        ok = set_tensor(&a[0], x) && set_tensor(&a[1], residual) && set_tensor(&a[2], c[0]) &&
             set_tensor(&a[3], s[0]) && set_tensors(&a[4], z, nz) && set_str(&a[5], fmt) &&
             set_int(&a[6], q->o->group_size);
    else
        ok = set_tensor(&a[0], c[0]) && set_tensor(&a[1], s[0]) && set_tensors(&a[2], z, nz) &&
             set_tensor(&a[3], x) && set_str(&a[4], fmt) && set_int(&a[5], q->o->group_size);
    if (!ok) {
        free_args(a, *nargs);
        return NULL;
    }
    return a;
}

/* Give node i the quantized op and arguments (its outputs unchanged). */
static bool rewrite(qz *q, int32_t i, pt_op op, int32_t x, const int32_t *vids, int n, int32_t residual,
                    const char *mode, const char *act, const pt_arg *norm) {
    int nargs;
    pt_arg *args = quant_args(q, op, x, vids, n, residual, mode, act, norm, &nargs);
    if (!args) return false;
    pt_node *nd = &q->g->nodes[i];
    free_args(nd->args, nd->nargs);
    nd->op = op;
    nd->args = args;
    nd->nargs = nargs;
    return true;
}

/* Split linear_n node i: the quantized weights (ok[k]) go to a qlinear
 * inserted before it, the rest stay.  Outputs follow their weights.  On
 * false (out of memory) the graph is unchanged. */
static bool split_linear_n(qz *q, int32_t i, const bool *ok) {
    pt_graph *g = q->g;
    const pt_node *n = &g->nodes[i];
    int nw = n->args[1].n, nq = 0;
    int32_t qv[12], qo[12], x = n->args[0].items[0].vid;
    for (int k = 0; k < nw; k++)
        if (ok[k]) qv[nq] = n->args[1].items[k].vid, qo[nq++] = n->outs[k];
    int nargs = 0;
    pt_arg *args = quant_args(q, PETREL_OP_PETREL_QLINEAR, x, qv, nq, -1, "n", "silu", &n->args[2], &nargs);
    int32_t *outs = pt_malloc((size_t)nq * sizeof *outs);
    char *name = qo[0] >= 0 ? pt_strdup(g->values[qo[0]].name) : NULL;
    pt_node *nodes = pt_realloc(g->nodes, (size_t)(g->nnodes + 1) * sizeof *nodes);
    if (nodes) g->nodes = nodes;
    if (!args || !outs || (qo[0] >= 0 && !name) || !nodes) {
        if (args) free_args(args, nargs);
        pt_free(outs);
        pt_free(name);
        return false;
    }
    pt_node *fl = &g->nodes[i];
    int nf = 0;
    for (int k = 0; k < nw; k++)
        if (!ok[k]) fl->args[1].items[nf] = fl->args[1].items[k], fl->outs[nf++] = fl->outs[k];
    fl->args[1].n = nf;
    fl->nout = nf;
    memcpy(outs, qo, (size_t)nq * sizeof *outs);
    memmove(&g->nodes[i + 1], &g->nodes[i], (size_t)(g->nnodes - i) * sizeof *g->nodes);
    g->nnodes++;
    g->nodes[i] = (pt_node){.op = PETREL_OP_PETREL_QLINEAR, .nargs = nargs, .args = args, .nout = nq, .outs = outs,
                            .name = name, .device = g->nodes[i + 1].device};
    return true;
}

/* Rewrite node i as planned (ok[k]: weight k quantized).  Returns the
 * nodes inserted before it (0 or 1), or -1 when memory ran out. */
static int rewrite_node(qz *q, int32_t i, const bool *ok) {
    const pt_node *n = &q->g->nodes[i];
    int32_t vids[12];
    const char *whole;
    int nw = node_weights(q, n, vids, &whole), all = 1;
    for (int k = 0; k < nw; k++) all &= ok[k];
    int32_t a0 = n->args[0].items[0].vid;
    switch (n->op) {
    case PETREL_OP_LINEAR: {
        const bool bias = n->args[2].kind == PT_ARG_TENSOR;
        int32_t b = bias ? n->args[2].items[0].vid : -1;
        return rewrite(q, i, PETREL_OP_PETREL_QLINEAR, a0, vids, 1, b, bias ? "bias" : "n", "silu", NULL) ? 0 : -1;
    }
    case PETREL_OP_PETREL_LINEAR_N:
        if (!all) return split_linear_n(q, i, ok) ? 1 : -1;
        return rewrite(q, i, PETREL_OP_PETREL_QLINEAR, a0, vids, nw, -1, "n", "silu", &n->args[2]) ? 0 : -1;
    case PETREL_OP_PETREL_GATED_LINEAR: {
        char act[32];
        snprintf(act, sizeof act, "%s", n->args[3].kind == PT_ARG_STRING ? n->args[3].str : "silu");
        return rewrite(q, i, PETREL_OP_PETREL_QLINEAR, a0, vids, 2, -1, "gated", act, &n->args[4]) ? 0 : -1;
    }
    case PETREL_OP_PETREL_LINEAR_ADD: {
        int32_t res = n->args[2].items[0].vid;
        return rewrite(q, i, PETREL_OP_PETREL_QLINEAR, a0, vids, 1, res, "add", "silu", NULL) ? 0 : -1;
    }
    case PETREL_OP_PETREL_EXPERT_LINEAR: { /* (x, weight, ids) */
        int32_t ids = n->args[2].items[0].vid;
        return rewrite(q, i, PETREL_OP_PETREL_QEXPERT_LINEAR, a0, vids, 1, ids, NULL, NULL, NULL) ? 0 : -1;
    }
    default: { /* embedding(weight, indices, ...) */
        int32_t ind = n->args[1].items[0].vid;
        return rewrite(q, i, PETREL_OP_PETREL_QEMBEDDING, ind, vids, 1, -1, NULL, NULL, NULL) ? 0 : -1;
    }
    }
}

/* Remove the values marked in `drop` (weights nothing refers to),
 * renumbering every reference to the others. */
static bool drop_values(pt_graph *g, const bool *drop) {
    int32_t *map = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *map);
    if (!map) return false;
    int32_t w = 0;
    for (int32_t v = 0; v < g->nvalues; v++) {
        if (drop[v]) {
            pt_free(g->values[v].name);
            pt_free(g->values[v].fqn);
            map[v] = -1;
            continue;
        }
        map[v] = w;
        g->values[w++] = g->values[v];
    }
    g->nvalues = w;
    for (int32_t i = 0; i < g->nnodes; i++) {
        pt_node *n = &g->nodes[i];
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) n->args[a].items[k].vid = map[n->args[a].items[k].vid];
        for (int k = 0; k < n->nout; k++)
            if (n->outs[k] >= 0) n->outs[k] = map[n->outs[k]];
    }
    for (int32_t i = 0; i < g->ninputs; i++) g->inputs[i] = map[g->inputs[i]];
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) g->outputs[i].item.vid = map[g->outputs[i].item.vid];
    for (int32_t i = 0; i < g->nmuts; i++) {
        g->muts[i].buffer_vid = map[g->muts[i].buffer_vid];
        g->muts[i].value_vid = map[g->muts[i].value_vid];
    }
    pt_free(map);
    return true;
}

/* The float weights the pass replaced that nothing reads any more. */
static bool drop_replaced(qz *q, int32_t nold) {
    pt_graph *g = q->g;
    bool *drop = pt_calloc((size_t)(g->nvalues ? g->nvalues : 1), sizeof *drop);
    if (!drop) return false;
    for (int32_t v = 0; v < nold; v++) drop[v] = q->wof[v] >= 0 && q->w[q->wof[v]].used;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) drop[n->args[a].items[k].vid] = false;
    }
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) drop[g->outputs[i].item.vid] = false;
    bool ok = drop_values(g, drop);
    pt_free(drop);
    return ok;
}

/* ---- the pass ------------------------------------------------------------------ */

static void report(const pc_quant_opts *o, int64_t done, int64_t total) {
    if (o->progress && total) o->progress("quantizing", done, total, o->progress_user);
}

petrel_status pc_quantize(pt_graph *g, const pc_quant_opts *o, pc_quant_result *r, pt_err *err) {
    memset(r, 0, sizeof *r);
    qz q = {.g = g, .o = o, .r = r};
    int32_t nold = g->nvalues;
    bool ok[12];
    q.wof = pt_malloc((size_t)(nold ? nold : 1) * sizeof *q.wof);
    q.noted = pt_calloc((size_t)(nold ? nold : 1), sizeof *q.noted);
    if (!q.wof || !q.noted) goto nomem;
    for (int32_t v = 0; v < nold; v++) q.wof[v] = -1;
    /* 1. the weights of the nodes to rewrite (and their partners) */
    for (int32_t i = 0; i < g->nnodes && !q.oom; i++) {
        int32_t vids[12];
        const char *whole;
        int nw = node_weights(&q, &g->nodes[i], vids, &whole);
        bool rewritten = nw && node_plan(&q, &g->nodes[i], ok, PLAN_FIRST);
        for (int k = 0; k < nw && !whole; k++) {
            char buf[96];
            if (refuse(&q, vids[k], buf, sizeof buf)) continue;
            int32_t wi = weight_of(&q, vids[k]);
            if (wi >= 0 && rewritten && ok[k]) q.w[wi].wanted = true;
        }
    }
    /* 2. quantize them */
    r->blobs = pt_calloc((size_t)(q.nw ? q.nw : 1), sizeof *r->blobs);
    if (q.oom || !r->blobs) goto nomem;
    int64_t total = 0, done = 0;
    for (int32_t i = 0; i < q.nw; i++)
        if (q.w[i].wanted) total += q.w[i].n * q.w[i].k * (int64_t)petrel_dtype_size(g->values[q.w[i].vid].dtype);
    report(o, 0, total);
    for (int32_t i = 0; i < q.nw; i++) {
        if (!q.w[i].wanted) continue;
        if (!quantize_one(&q, &q.w[i])) goto nomem;
        done += q.w[i].n * q.w[i].k * (int64_t)petrel_dtype_size(g->values[q.w[i].vid].dtype);
        report(o, done, total);
    }
    /* 3. the final plan (quantization may have failed), the new values */
    int32_t nused = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        int32_t vids[12];
        const char *whole;
        int nw = node_weights(&q, &g->nodes[i], vids, &whole);
        if (!nw || !node_plan(&q, &g->nodes[i], ok, PLAN_REPORT)) continue;
        for (int k = 0; k < nw; k++)
            if (ok[k] && !q.w[q.wof[vids[k]]].used) q.w[q.wof[vids[k]]].used = true, nused++;
    }
    if (nused) {
        pt_value *vals = pt_realloc(g->values, (size_t)(g->nvalues + 3 * nused) * sizeof *vals);
        if (!vals) goto nomem;
        g->values = vals;
        g->cap_values = g->nvalues + 3 * nused;
    }
    for (int32_t i = 0; i < q.nw; i++) {
        qz_weight *w = &q.w[i];
        if (!w->used) continue;
        if (!make_values(&q, w)) goto nomem;
        r->quantized++;
        r->bytes_before += w->n * w->k * (int64_t)petrel_dtype_size(g->values[w->vid].dtype);
        r->bytes_after += w->codes_bytes + w->scales_bytes + w->zeros_bytes;
    }
    /* 4. rewrite the nodes, 5. drop the float weights left unread */
    for (int32_t i = 0; i < g->nnodes; i++) {
        const char *whole;
        int32_t vids[12];
        if (!node_weights(&q, &g->nodes[i], vids, &whole) || !node_plan(&q, &g->nodes[i], ok, PLAN_FINAL)) continue;
        int ins = rewrite_node(&q, i, ok);
        if (ins < 0) goto nomem;
        i += ins;
    }
    if (!drop_replaced(&q, nold)) goto nomem;
    pt_free(q.wof);
    pt_free(q.noted);
    pt_free(q.w);
    return PETREL_OK;
nomem:
    pt_free(q.wof);
    pt_free(q.noted);
    pt_free(q.w);
    return pt_fail(err, PETREL_ERR_NOMEM, "out of memory quantizing the weights");
}

void pc_quant_free(pc_quant_result *r) {
    for (int32_t i = 0; r->blobs && i < r->nblobs; i++) pt_free(r->blobs[i]);
    pt_free(r->blobs);
    r->blobs = NULL;
    r->nblobs = 0;
}
