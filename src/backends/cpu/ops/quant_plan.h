/*
** quant_plan.h -- the operand side of the quantized-weight ops
** (petrel.qlinear, petrel.qembedding; formats and layout in ops.def),
** shared by the CPU reference (quant.c) and the CUDA backend
** (cuda/ops/quant.c): the format and group-size arguments and each
** weight's codes / scales / zeros checked against them, with the same
** messages on every backend.
*/
#ifndef PETREL_CPU_QUANT_PLAN_H
#define PETREL_CPU_QUANT_PLAN_H

#include <stdio.h>
#include <string.h>

#include "../../../core/quant_fmt.h"
#include "../../../runtime/kernel.h"
#include "matmul_plan.h" /* mm_act_id */

/* One quantized weight's operands, checked (element strides). */
typedef struct q_weight_ref {
    int64_t N;                  /* rows */
    const uint8_t *codes;       /* (N, K * bits / 8) */
    int64_t code_rs;
    const uint8_t *scales;      /* (N, K / G) */
    petrel_dtype sdt;
    int64_t s_rs, s_cs;
    const int8_t *zeros;        /* asymmetric formats: (N, K / G), else NULL */
    int64_t z_rs, z_cs;
    const pt_tensor *tscale;    /* nvfp4: the f32 (1) per-tensor scale, else NULL */
} q_weight_ref;

/* "(d0, d1, ...)" for messages. */
static inline const char *q_shape(const pt_tensor *t, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->rank && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (at < n) snprintf(buf + at, n - at, ")");
    return buf;
}

/* ---- operands -------------------------------------------------------------- */

/* The format and group size arguments, checked against K; *fmt on success. */
static inline petrel_status q_format(pt_exec *ex, const char *op, const char *name, int64_t G, int64_t K, pt_qfmt *fmt) {
    int f = pt_qfmt_parse(name);
    *fmt = (pt_qfmt)0;
    if (f < 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME,
                       "%s: unknown format '%s' (" PT_QFMT_LIST ")", op, name ? name : "None");
    if (G < 1) return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: group_size must be positive, got %lld", op, (long long)G);
    if (f == PT_QFMT_NVFP4 && G != PT_NVFP4_GROUP)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: nvfp4 has groups of %d, got group_size %lld", op,
                       PT_NVFP4_GROUP, (long long)G);
    if (K % G)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: K = %lld is not a multiple of group_size %lld", op, (long long)K,
                       (long long)G);
    if (K * pt_qfmt_bits((pt_qfmt)f) % 8)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: K = %lld %d-bit codes do not fill whole bytes", op, (long long)K,
                       pt_qfmt_bits((pt_qfmt)f));
    *fmt = (pt_qfmt)f;
    return PETREL_OK;
}

/* Check weight i's tensors against (fmt, G, K) and describe it in *w.
 * zero: its zeros entry (NULL for symmetric formats). */
static inline petrel_status q_operand(pt_exec *ex, const char *op, int i, pt_qfmt fmt, int64_t G, int64_t K,
                                      const pt_tensor *codes, const pt_tensor *scales, const pt_tensor *zero,
                                      q_weight_ref *w) {
    char b1[96], b2[96];
    int64_t cols = K * pt_qfmt_bits(fmt) / 8, ng = K / G;
    if (!codes || codes->dtype != PETREL_DTYPE_U8 || codes->rank != 2 || codes->shape[1] != cols)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: codes[%d] must be u8 (N, %lld) for K = %lld in %d bits, got %s %s", op,
                       i, (long long)cols, (long long)K, pt_qfmt_bits(fmt),
                       codes ? petrel_dtype_name(codes->dtype) : "None", codes ? q_shape(codes, b1, sizeof b1) : "");
    if (codes->shape[1] > 1 && codes->stride[1] != 1)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: codes[%d] must be contiguous along its rows", op, i);
    int64_t N = codes->shape[0];
    bool fp4 = fmt == PT_QFMT_NVFP4;
    if (!scales || scales->rank != 2 || scales->shape[0] != N || scales->shape[1] != ng)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: scales[%d] must have shape (%lld, %lld) (N, K / group_size), got %s",
                       op, i, (long long)N, (long long)ng, scales ? q_shape(scales, b2, sizeof b2) : "None");
    if (fp4 ? scales->dtype != PETREL_DTYPE_U8 : !pt_dtype_is_float(scales->dtype))
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: scales[%d] must be %s, got %s", op, i,
                       fp4 ? "u8 (E4M3 bits)" : "a float dtype", petrel_dtype_name(scales->dtype));
    *w = (q_weight_ref){.N = N, .codes = codes->data, .code_rs = codes->stride[0], .scales = scales->data,
                        .sdt = scales->dtype, .s_rs = scales->stride[0], .s_cs = scales->stride[1]};
    if (fp4) {
        if (!zero || zero->dtype != PETREL_DTYPE_F32 || pt_numel(zero) != 1)
            return pk_fail(ex, PETREL_ERR_SHAPE, "%s: zeros[%d] must be the f32 tensor scale of shape (1), got %s %s", op,
                           i, zero ? petrel_dtype_name(zero->dtype) : "None", zero ? q_shape(zero, b1, sizeof b1) : "");
        w->tscale = zero;
    } else if (pt_qfmt_asym(fmt)) {
        if (!zero || zero->dtype != PETREL_DTYPE_I8 || zero->rank != 2 || zero->shape[0] != N || zero->shape[1] != ng)
            return pk_fail(ex, PETREL_ERR_SHAPE, "%s: zeros[%d] must be i8 (%lld, %lld) like the scales, got %s %s", op, i,
                           (long long)N, (long long)ng, zero ? petrel_dtype_name(zero->dtype) : "None",
                           zero ? q_shape(zero, b1, sizeof b1) : "");
        w->zeros = (const int8_t *)zero->data;
        w->z_rs = zero->stride[0];
        w->z_cs = zero->stride[1];
    }
    return PETREL_OK;
}

/* The zeros list must hold one entry per weight (asymmetric formats and
 * nvfp4) or be empty (symmetric formats). */
static inline petrel_status q_zeros_count(pt_exec *ex, const char *op, pt_qfmt fmt, int nzeros, int nweights) {
    bool want = pt_qfmt_asym(fmt) || fmt == PT_QFMT_NVFP4;
    if (want && nzeros != nweights)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: format %s needs one zeros entry per weight (%d), got %d", op,
                       pt_qfmt_name(fmt), nweights, nzeros);
    if (!want && nzeros != 0)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: format %s is symmetric: zeros must be empty, got %d entries", op,
                       pt_qfmt_name(fmt), nzeros);
    return PETREL_OK;
}

/* petrel.qlinear's modes (ops.def). */
enum { Q_MODE_N, Q_MODE_GATED, Q_MODE_ADD, Q_MODE_BIAS };

/* petrel.qlinear's arguments, checked as far as both backends agree: x,
 * the format and group size against K, the mode and activation, and the
 * weight lists' counts (each weight is then checked by q_operand). */
typedef struct q_linear_args {
    const pt_tensor *x;
    int64_t K, G;
    pt_qfmt fmt;
    int mode, act;             /* act: MM_ACT_* for "gated", else -1 */
    int nw, nz;                /* weights; zeros entries (0 or nw) */
    const pt_tensor **codes, **scales, **zeros;
} q_linear_args;

static inline petrel_status q_linear_args_of(pt_exec *ex, const pt_node *n, q_linear_args *a) {
    const char *op = "qlinear";
    memset(a, 0, sizeof *a);
    a->act = -1;
    const pt_tensor *x = a->x = pk_tensor(ex, n, 0);
    if (!x || x->rank < 1 || !pt_dtype_is_float(x->dtype))
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: x must be a float tensor (..., K)", op);
    a->K = x->shape[x->rank - 1], a->G = pk_int(ex, n, 6);
    PT_TRY(q_format(ex, op, pk_str(ex, n, 5), a->G, a->K, &a->fmt));
    const char *ms = pk_str(ex, n, 7);
    a->mode = !ms ? -1 : !strcmp(ms, "n") ? Q_MODE_N : !strcmp(ms, "gated") ? Q_MODE_GATED
                       : !strcmp(ms, "add") ? Q_MODE_ADD : !strcmp(ms, "bias") ? Q_MODE_BIAS : -1;
    if (a->mode < 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: unknown mode '%s' (n, gated, add or bias)", op, ms ? ms : "None");
    if (a->mode == Q_MODE_GATED && (a->act = mm_act_id(pk_str(ex, n, 8))) < 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: unknown activation '%s' (silu, gelu or gelu_tanh)", op,
                       pk_str(ex, n, 8) ? pk_str(ex, n, 8) : "None");
    if ((a->mode == Q_MODE_ADD || a->mode == Q_MODE_BIAS) && pk_bool(ex, n, 9))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: mode %s has no RMSNorm prologue (norm must be False)", op, ms);
    int ns = 0, want = a->mode == Q_MODE_N ? n->nout : a->mode == Q_MODE_GATED ? 2 : 1;
    a->codes = pk_tensors(ex, n, 1, &a->nw);
    a->scales = pk_tensors(ex, n, 2, &ns);
    a->zeros = pk_tensors(ex, n, 3, &a->nz);
    if (!a->codes || !a->scales) return pk_fail(ex, PETREL_ERR_NOMEM, "%s: out of memory", op);
    if (a->nw != want)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: mode %s needs %d weight%s%s, got %d", op, ms, want,
                       want == 1 ? "" : "s", a->mode == Q_MODE_N ? " (one per output)" : "", a->nw);
    if (ns != a->nw) return pk_fail(ex, PETREL_ERR_SHAPE, "%s: %d codes but %d scales", op, a->nw, ns);
    return q_zeros_count(ex, op, a->fmt, a->nz, a->nw);
}

/* petrel.qembedding's arguments, checked as far as both backends agree:
 * the format against K (from the codes' width), the zeros count, the
 * indices; shape: the output's (indices..., K). */
typedef struct q_embedding_args {
    const pt_tensor *codes, *scales, *zero, *ind; /* zero: NULL for symmetric formats */
    int64_t K, G;
    pt_qfmt fmt;
    int64_t shape[PETREL_MAX_RANK];
} q_embedding_args;

static inline petrel_status q_embedding_args_of(pt_exec *ex, const pt_node *n, q_embedding_args *a) {
    const char *op = "qembedding";
    memset(a, 0, sizeof *a);
    a->codes = pk_tensor(ex, n, 0), a->scales = pk_tensor(ex, n, 1), a->ind = pk_tensor(ex, n, 3);
    if (!a->codes || a->codes->rank != 2)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: codes must be u8 (V, K * bits / 8)", op);
    int f = pt_qfmt_parse(pk_str(ex, n, 4));
    a->K = f < 0 ? 0 : a->codes->shape[1] * 8 / pt_qfmt_bits((pt_qfmt)f), a->G = pk_int(ex, n, 5);
    PT_TRY(q_format(ex, op, pk_str(ex, n, 4), a->G, a->K, &a->fmt));
    int nz = 0;
    const pt_tensor **zeros = pk_tensors(ex, n, 2, &nz);
    PT_TRY(q_zeros_count(ex, op, a->fmt, nz, 1));
    a->zero = nz ? zeros[0] : NULL;
    const pt_tensor *ind = a->ind;
    if (!ind || ind->dtype == PETREL_DTYPE_BOOL || pt_dtype_is_float(ind->dtype))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: indices must be integers", op);
    if (ind->rank + 1 > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_SHAPE, "%s: rank too large", op);
    memcpy(a->shape, ind->shape, sizeof(int64_t) * (size_t)ind->rank);
    a->shape[ind->rank] = a->K;
    return PETREL_OK;
}

/* Expert e's matrix of a 3-D tensor (E, rows, cols): a 2-D view. */
static inline pt_tensor q_expert_slice(const pt_tensor *t, int64_t e) {
    pt_tensor r = *t;
    r.rank = 2;
    r.shape[0] = t->shape[1], r.shape[1] = t->shape[2];
    r.stride[0] = t->stride[1], r.stride[1] = t->stride[2];
    r.data = t->data + e * t->stride[0] * (int64_t)pt_elsize(t);
    return r;
}

/* petrel.qexpert_linear's arguments, checked as far as both backends
 * agree: x (T, K) float, ids (T) integers, codes (E, N, K * bits / 8),
 * scales (E, ...) and the zeros list (3-D entries for asymmetric formats;
 * each expert's matrices are then checked by q_operand on
 * q_expert_slice views), the format and group size against K. */
typedef struct q_expert_args {
    const pt_tensor *x, *ids, *codes, *scales, *zero; /* zero: NULL for symmetric formats */
    int64_t T, K, E, G;
    pt_qfmt fmt;
} q_expert_args;

static inline petrel_status q_expert_args_of(pt_exec *ex, const pt_node *n, q_expert_args *a) {
    const char *op = "qexpert_linear";
    char b1[96];
    memset(a, 0, sizeof *a);
    const pt_tensor *x = a->x = pk_tensor(ex, n, 0), *ids = a->ids = pk_tensor(ex, n, 1);
    a->codes = pk_tensor(ex, n, 2), a->scales = pk_tensor(ex, n, 3);
    if (!x || x->rank != 2 || !pt_dtype_is_float(x->dtype))
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: x must be a float tensor (T, K)", op);
    a->T = x->shape[0], a->K = x->shape[1], a->G = pk_int(ex, n, 6);
    if (!ids || ids->rank != 1 || ids->shape[0] != a->T || ids->dtype == PETREL_DTYPE_BOOL ||
        pt_dtype_is_float(ids->dtype))
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: ids must be integers of shape (%lld), one per row of x", op,
                       (long long)a->T);
    PT_TRY(q_format(ex, op, pk_str(ex, n, 5), a->G, a->K, &a->fmt));
    if (!a->codes || a->codes->rank != 3 || !a->scales || a->scales->rank != 3 ||
        a->scales->shape[0] != a->codes->shape[0])
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: codes and scales must be 3-D (E, N, ...), one matrix per expert, got %s",
                       op, a->codes ? q_shape(a->codes, b1, sizeof b1) : "None");
    a->E = a->codes->shape[0];
    int nz = 0;
    const pt_tensor **zeros = pk_tensors(ex, n, 4, &nz);
    PT_TRY(q_zeros_count(ex, op, a->fmt, nz, 1));
    a->zero = nz ? zeros[0] : NULL;
    if (pt_qfmt_asym(a->fmt) && (!a->zero || a->zero->rank != 3 || a->zero->shape[0] != a->E))
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: zeros must be 3-D (E, N, K / group_size) like the scales", op);
    return PETREL_OK;
}

/* Expert e's weight of a checked qexpert_linear: its matrices' views
 * checked by q_operand (the same checks and messages as a qlinear's). */
static inline petrel_status q_expert_operand(pt_exec *ex, const q_expert_args *a, int64_t e, pt_tensor v[3],
                                             q_weight_ref *w) {
    v[0] = q_expert_slice(a->codes, e);
    v[1] = q_expert_slice(a->scales, e);
    if (a->zero && a->zero->rank == 3) v[2] = q_expert_slice(a->zero, e);
    else if (a->zero) v[2] = *a->zero; /* nvfp4's tensor scale serves every expert */
    return q_operand(ex, "qexpert_linear", (int)e, a->fmt, a->G, a->K, &v[0], &v[1], a->zero ? &v[2] : NULL, w);
}

/* ---- petrel.qkv_attn as its two ops ------------------------------------------ */

/* Result k (1..3) of qkv_attn node n, the projection p (B, L, N) the
 * backend's qlinear wrote there, replaced by its heads' view
 * p.view(B, L, N / D, D).transpose(1, 2) (ops.def). */
static inline petrel_status q_qkv_heads(pt_exec *ex, const pt_node *n, int k, const pt_tensor *p, int64_t D) {
    if (p->rank != 3 || D <= 0 || p->shape[2] % D)
        return pk_fail(ex, PETREL_ERR_SHAPE, "qkv_attn: projection %d of %lld columns does not split into heads of %lld",
                       k - 1, (long long)(p->rank == 3 ? p->shape[2] : -1), (long long)D);
    int64_t shape[4] = {p->shape[0], p->shape[2] / D, p->shape[1], D};
    int64_t stride[4] = {p->stride[0], D * p->stride[2], p->stride[1], p->stride[2]};
    return pk_out_view(ex, n, k, p, p->dtype, 4, shape, stride, p->data);
}

/* The nodes of qkv_attn node n's two ops, over n's arguments and results
 * (ops.def's order: n's 4 .. 17 are sdpa_cache's 3 .. 16): ln, the
 * petrel.qlinear writing results 1..3, and an, the petrel.sdpa_cache
 * reading them and writing result 0.  Their arguments live in the struct
 * (on the caller's stack: nothing allocated), which must stay in place. */
typedef struct q_qkv_nodes {
    pt_arg la[14], aa[17];
    pt_item it[3];
    pt_node ln, an;
} q_qkv_nodes;

static inline petrel_status q_qkv_nodes_of(pt_exec *ex, const pt_node *n, q_qkv_nodes *q) {
    if (n->nargs != 25 || n->nout != 4)
        return pk_fail(ex, PETREL_ERR_RUNTIME, "qkv_attn: %d arguments and %d results (want 25 and 4)", n->nargs,
                       n->nout);
    for (int a = 0; a < 4; a++) q->la[a] = n->args[a];
    q->la[4] = (pt_arg){.kind = PT_ARG_NONE};
    q->la[5] = n->args[18], q->la[6] = n->args[19];
    q->la[7] = (pt_arg){.kind = PT_ARG_STRING, .str = (char *)"n"};
    q->la[8] = (pt_arg){.kind = PT_ARG_STRING, .str = (char *)"silu"};
    for (int a = 0; a < 5; a++) q->la[9 + a] = n->args[20 + a];
    q->ln = (pt_node){.op = PETREL_OP_PETREL_QLINEAR, .nargs = 14, .args = q->la, .nout = 3, .outs = n->outs + 1,
                      .name = n->name, .device = n->device};
    for (int k = 0; k < 3; k++) {
        q->it[k] = (pt_item){.vid = n->outs[1 + k]};
        q->aa[k] = (pt_arg){.kind = PT_ARG_TENSOR, .n = 1, .items = &q->it[k]};
    }
    for (int a = 3; a < 17; a++) q->aa[a] = n->args[a + 1];
    q->an = (pt_node){.op = PETREL_OP_PETREL_SDPA_CACHE, .nargs = 17, .args = q->aa, .nout = 1, .outs = n->outs,
                      .name = n->name, .device = n->device};
    return PETREL_OK;
}

/* petrel.qkv_attn composed from the backend's kernels of its two ops
 * (lin: petrel.qlinear's family, attn: petrel.sdpa_cache's). */
static inline petrel_status q_qkv_attn_composed(pt_exec *ex, const pt_node *n, pt_kernel_fn lin, pt_kernel_fn attn) {
    q_qkv_nodes q;
    PT_TRY(q_qkv_nodes_of(ex, n, &q));
    const pt_tensor *kc = pk_tensor(ex, n, 4), *vc = pk_tensor(ex, n, 5);
    if (!kc || !vc || kc->rank != 4 || vc->rank != 4)
        return pk_fail(ex, PETREL_ERR_SHAPE, "qkv_attn needs 4-D caches");
    PT_TRY(lin(ex, &q.ln));
    for (int k = 0; k < 3; k++) {
        const pt_tensor *p = pk_tensor(ex, &q.an, k);
        if (!p) return pk_fail(ex, PETREL_ERR_RUNTIME, "qkv_attn: projection %d missing", k);
        pt_tensor pc = *p; /* the slot is rewritten below */
        PT_TRY(q_qkv_heads(ex, n, 1 + k, &pc, k == 2 ? vc->shape[3] : kc->shape[3]));
    }
    return attn(ex, &q.an);
}

#endif /* PETREL_CPU_QUANT_PLAN_H */
