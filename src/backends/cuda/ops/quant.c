/*
** quant.c -- the CUDA "quant" family: petrel.qlinear (modes n, gated,
** add, bias) and petrel.qembedding over quantized weights (formats and meaning:
** ops.def; the byte layout: core/quant_fmt.h), for f32 / f16 / bf16
** activations.  The argument checks and their messages are the CPU
** kernel's (cpu/ops/quant.c, the oracle).  Part of the CUDA backend.
**
** Decode (at most 8 rows of x) runs quant_k.cu's GEMV, which reads the
** packed codes once and dequantizes them in registers, W in float exactly
** as ops.def defines it: one launch for up to 8 weights of a mode "n"
** node (a layer's q/k/v), gated_linear's and linear_add's rounding points
** in its epilogue.  Prefill, and weights whose layout the GEMV cannot read
** (pcu_qgemv_fits), dequantize panels of at most QP_ROWS rows into device
** scratch in the compute dtype, multiply them with cuBLAS (fp32
** accumulation, one rounding into the output) and apply gated / add with
** the fused linears' epilogue (matmul_k.h).  For f32 programs a panel
** holds W exactly; for f16 / bf16 programs it rounds W to that dtype,
** which stays within those dtypes' tolerance but is not ops.def's "W in
** float" (only the GEMV computes that there).  The RMSNorm prologue of
** modes n and gated runs inside the decode GEMV as in matmul.c's float
** one (quant_k.h), otherwise first as the row-norm kernel (norm_k.h).
**
** Embedding rows are gathered and dequantized on the device and rounded
** once to the output dtype, the same values as the CPU's; an index out of
** range reads zeros (the values live on the device: quant_k.h).
*/
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../../core/quant_fmt.h"
#include "../../cpu/ops/matmul_plan.h"
#include "../../cpu/ops/quant_plan.h"
#include "../cuda.h"
#include "expert_k.h"
#include "norm_k.h"
#include "qkv_attn_k.h"
#include "quant_k.h"

/* A prefill panel: at most QP_ROWS dequantized weight rows and QP_BYTES
 * (8192 rows of K = 2048 in bf16). */
#define QP_ROWS 8192
#define QP_BYTES ((int64_t)32 << 20)

static bool q_float(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F32 || dt == PETREL_DTYPE_F16 || dt == PETREL_DTYPE_BF16;
}

/* ---- operands (quant_plan.h: the CPU kernel's checks) -------------------------- */

/* Weight i checked and described for the kernels; nvfp4's tensor scale
 * stays on the device (the kernels read it). */
static petrel_status q_weight(pt_exec *ex, const char *op, int i, pt_qfmt fmt, int64_t G, int64_t K,
                              const pt_tensor *codes, const pt_tensor *scales, const pt_tensor *zero,
                              pcu_qweight *w) {
    q_weight_ref r = {0};
    PT_TRY(q_operand(ex, op, i, fmt, G, K, codes, scales, zero, &r));
    if (r.tscale && pcu_is_host_scalar(r.tscale))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "%s: zeros[%d] must be a device tensor", op, i);
    *w = (pcu_qweight){.codes = r.codes, .code_rs = r.code_rs, .scales = r.scales, .sdt = (int32_t)r.sdt,
                       .s_rs = r.s_rs, .s_cs = r.s_cs, .N = r.N, .zeros = r.zeros, .z_rs = r.z_rs, .z_cs = r.z_cs,
                       .t = r.tscale ? (const float *)r.tscale->data : NULL};
    return PETREL_OK;
}

/* ---- rows of x, products --------------------------------------------------------- */

/* A qlinear's operands once checked. */
typedef struct q_lin {
    pt_qfmt fmt;
    int64_t G, K, M;   /* M: rows of x, its leading dims flattened */
    petrel_dtype dt;   /* x, the outputs and the panels */
    const void *x;     /* (M, K), row stride ldx, rows 16-byte aligned */
    int64_t ldx;
    bool w_const;      /* every codes, scales and zeros tensor is a program constant */
    int64_t nmax;      /* the most rows of one weight (sizes the panel) */
    void *panel;       /* (prows, K) of dt in device scratch; NULL until a panel product */
    int64_t prows;
    const pt_tensor *xt; /* x itself (the norm kernel's view of it) */
    pcu_prenorm pn;    /* the RMSNorm prologue; off once x is normalized */
} q_lin;

/* The norm prologue for the products of g: inside the GEMV when it takes
 * it (one row of x, a norm weight of x's dtype), else the row-norm kernel
 * normalizes x first, once for all the node's products. */
static petrel_status q_norm(pt_exec *ex, q_lin *L, pcu_qgemv *g) {
    if (!L->pn.on) return PETREL_OK;
    const pt_tensor *w = L->pn.w;
    if (L->M == 1 && w && w->dtype == L->dt) {
        g->norm = 1, g->norm_add_one = L->pn.add_one, g->norm_w = w->data, g->norm_eps = L->pn.eps;
        if (pcu_qgemv_fits(g)) return PETREL_OK;
        g->norm = 0;
    }
    PT_TRY(pcu_prenorm_run(ex, &L->pn, L->xt, &L->x, &L->ldx, L->M));
    L->pn.on = false;
    g->x = L->x, g->ldx = L->ldx;
    return PETREL_OK;
}

/* The GEMV's arguments for L, without weights. */
static pcu_qgemv q_gemv_args(const q_lin *L, int mode, int act) {
    return (pcu_qgemv){.dtype = (int32_t)L->dt, .fmt = (int32_t)L->fmt, .G = L->G, .x = L->x, .ldx = L->ldx,
                       .M = (int32_t)(L->M <= PCU_QGEMV_MAX_M ? L->M : 0), .K = L->K, .mode = mode, .act = act,
                       .w_const = L->w_const};
}

static cudaDataType q_blas_type(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F16 ? CUDA_R_16F : dt == PETREL_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* out (M, N) dense = x @ W^T through dequantized panels and cuBLAS. */
static petrel_status q_gemm(pt_exec *ex, q_lin *L, const pcu_qweight *w, void *out, float beta) {
    int64_t N = w->N, K = L->K, M = L->M, es = (int64_t)petrel_dtype_size(L->dt);
    if (M == 0 || N == 0) return PETREL_OK;
    if (K == 0) { /* empty sums: out stays beta * out (0 or 1) */
        if (beta == 0.0f) PCU_TRY(ex, cudaMemsetAsync(out, 0, (size_t)(M * N * es), pcu_stream(ex)));
        return PETREL_OK;
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || L->ldx > INT_MAX)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "qlinear: matrix dims beyond 2^31 are not supported on CUDA");
    if (!L->panel) {
        int64_t rows = QP_BYTES / (K * es);
        rows = rows < 1 ? 1 : rows > QP_ROWS ? QP_ROWS : rows;
        L->prows = rows < L->nmax ? rows : L->nmax;
        if (!(L->panel = pk_dev_scratch(ex, (size_t)(L->prows * K * es))))
            return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for dequantized qlinear weights");
    }
    cudaDataType ty = q_blas_type(L->dt);
    float one = 1.0f;
    for (int64_t n0 = 0; n0 < N; n0 += L->prows) {
        int64_t nb = N - n0 < L->prows ? N - n0 : L->prows;
        PCU_LAUNCHED(ex,
                     pcu_qdequant_launch(pcu_stream(ex), (int32_t)L->fmt, L->G, K, w, n0, nb, L->panel, (int32_t)L->dt,
                                         pk_cuda(ex)->sm_count),
                     "qlinear dequantize");
        PCU_BLAS(ex, cublasGemmEx(pk_cuda(ex)->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nb, (int)M, (int)K, &one, L->panel,
                                  ty, (int)K, L->x, ty, (int)L->ldx, &beta, (uint8_t *)out + n0 * es, ty, (int)N,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return PETREL_OK;
}

/* ---- petrel.qlinear --------------------------------------------------------------- */


/* Output k: x's shape with the last dim N, of x's dtype. */
static petrel_status q_out(pt_exec *ex, const pt_node *n, int k, const pt_tensor *x, int64_t N, pt_tensor **out) {
    if (pk_out_dtype(ex, n, k) != x->dtype)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA qlinear needs outputs of its input's dtype");
    int64_t shape[PETREL_MAX_RANK];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->rank);
    shape[x->rank - 1] = N;
    return pk_out_alloc(ex, n, k, x->rank, shape, out);
}

/* Mode "n": output i = x @ W_i^T, rounded once; unused outputs skipped. */
static petrel_status q_linear_n(pt_exec *ex, const pt_node *n, const pt_tensor *x, q_lin *L, const pcu_qweight *ws,
                                int nw) {
    pcu_qweight *used = (pcu_qweight *)pk_scratch(ex, (size_t)nw * sizeof *used);
    void **outs = (void **)pk_scratch(ex, (size_t)nw * sizeof *outs);
    if (!used || !outs) return pk_fail(ex, PETREL_ERR_NOMEM, "out of memory");
    int nu = 0;
    for (int i = 0; i < nw; i++) {
        if (i >= n->nout || n->outs[i] < 0) continue;
        pt_tensor *out;
        PT_TRY(q_out(ex, n, i, x, ws[i].N, &out));
        used[nu] = ws[i], outs[nu++] = out->data;
    }
    for (int b = 0; b < nu && L->M > 0; b += PCU_QGEMV_MAX_W) { /* one GEMV launch for up to 8 weights */
        int cnt = nu - b < PCU_QGEMV_MAX_W ? nu - b : PCU_QGEMV_MAX_W;
        pcu_qgemv g = q_gemv_args(L, PCU_GEMV_PLAIN, 0);
        g.nw = cnt;
        for (int j = 0; j < cnt; j++) g.w[j] = used[b + j], g.out[j] = outs[b + j];
        PT_TRY(q_norm(ex, L, &g));
        if (pcu_qgemv_fits(&g)) {
            PCU_LAUNCHED(ex, pcu_qgemv_launch(pcu_stream(ex), &g, pk_cuda(ex)->sm_count), "qlinear gemv");
            continue;
        }
        for (int j = 0; j < cnt; j++) PT_TRY(q_gemm(ex, L, &used[b + j], outs[b + j], 0.0f));
    }
    return PETREL_OK;
}

/* Modes "gated" (act >= 0: act(g) * u, weights gate and up), "add"
 * (act < 0: residual + p) and "bias" (bias: p + b inside the one rounding),
 * with gated_linear's, linear_add's and linear's rounding points.  The
 * bias's prefill fills the output with b and has cuBLAS add the product
 * (beta 1: one rounding of the float sum). */
static petrel_status q_linear_2(pt_exec *ex, const pt_node *n, const pt_tensor *x, q_lin *L, const pcu_qweight *ws,
                                int act, bool bias) {
    int64_t N = ws[0].N;
    pt_tensor *out;
    PT_TRY(q_out(ex, n, 0, x, N, &out));
    pt_tensor res; /* the residual as (rows, N): row m at m * rs */
    int64_t rs = 0, rn = 0;
    if (act < 0) {
        const pt_tensor *r = pk_tensor(ex, n, 4);
        if (!r || !pt_broadcast_to(r, out->rank, out->shape, &res))
            return pk_fail(ex, PETREL_ERR_SHAPE, "qlinear: the %s does not fit the product", bias ? "bias" : "residual");
        if (!q_float(r->dtype) || pcu_is_host_scalar(r))
            return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA qlinear needs an f32/f16/bf16 device tensor as %s",
                           bias ? "bias" : "residual");
        if (!mm_row_stride(&res, &rs)) {
            pt_tensor d = *out;
            d.dtype = res.dtype;
            if (!(d.data = pk_dev_scratch(ex, (size_t)(pt_numel(out) * (int64_t)pt_elsize(&res)))))
                return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a residual");
            PT_TRY(pcu_copy_into(ex, &d, &res));
            res = d;
            rs = N;
        }
        rn = res.rank > 0 ? res.stride[res.rank - 1] : 0;
    }
    if (pt_numel(out) == 0) return PETREL_OK;
    int mode = act >= 0 ? PCU_GEMV_GATED : PCU_GEMV_RESID;
    pcu_qgemv g = q_gemv_args(L, mode, act >= 0 ? act : 0);
    g.nw = act >= 0 ? 2 : 1;
    g.w[0] = ws[0], g.out[0] = out->data;
    if (act >= 0) g.w[1] = ws[1];
    else g.res = res.data, g.res_dtype = (int32_t)res.dtype, g.res_sm = rs, g.res_sn = rn, g.res_raw = bias;
    PT_TRY(q_norm(ex, L, &g));
    if (pcu_qgemv_fits(&g)) {
        PCU_LAUNCHED(ex, pcu_qgemv_launch(pcu_stream(ex), &g, pk_cuda(ex)->sm_count), "qlinear gemv");
        return PETREL_OK;
    }
    if (bias) { /* out = b broadcast, then out += x @ W^T in float, rounded once */
        PT_TRY(pcu_copy_into(ex, out, &res));
        return q_gemm(ex, L, &ws[0], out->data, 1.0f);
    }
    size_t bytes = (size_t)(L->M * N * (int64_t)pt_elsize(out));
    void *a = pk_dev_scratch(ex, bytes), *b = act >= 0 ? pk_dev_scratch(ex, bytes) : NULL;
    if (!a || (act >= 0 && !b)) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a qlinear's products");
    PT_TRY(q_gemm(ex, L, &ws[0], a, 0.0f));
    if (act >= 0) PT_TRY(q_gemm(ex, L, &ws[1], b, 0.0f));
    PCU_LAUNCHED(ex,
                 pcu_linear_epilogue_launch(pcu_stream(ex), out->dtype, mode, act >= 0 ? act : 0, a,
                                            act >= 0 ? b : res.data, act >= 0 ? out->dtype : res.dtype, rs, rn, N,
                                            out->data, L->M * N),
                 "qlinear epilogue");
    return PETREL_OK;
}

_Static_assert((int)MM_ACT_SILU == (int)PCU_ACT_SILU && (int)MM_ACT_GELU == (int)PCU_ACT_GELU &&
                   (int)MM_ACT_GELU_TANH == (int)PCU_ACT_GELU_TANH,
               "activation numbering shared with matmul_plan.h");

static petrel_status q_linear(pt_exec *ex, const pt_node *n) {
    const char *op = "qlinear";
    q_linear_args qa;
    PT_TRY(q_linear_args_of(ex, n, &qa));
    const pt_tensor *x = qa.x;
    int nc = qa.nw, nz = qa.nz, mode = qa.mode, act = qa.act;
    pt_qfmt fmt = qa.fmt;
    int64_t G = qa.G, K = qa.K;
    const pt_tensor **codes = qa.codes, **scales = qa.scales, **zeros = qa.zeros;
    pcu_qweight *ws = (pcu_qweight *)pk_scratch(ex, (size_t)(nc ? nc : 1) * sizeof *ws);
    if (!ws) return pk_fail(ex, PETREL_ERR_NOMEM, "out of memory");
    q_lin L = {.fmt = fmt, .G = G, .K = K, .dt = x->dtype, .w_const = true};
    for (int i = 0; i < nc; i++) {
        PT_TRY(q_weight(ex, op, i, fmt, G, K, codes[i], scales[i], nz ? zeros[i] : NULL, &ws[i]));
        L.w_const = L.w_const && pk_is_const(ex, n, 1, i) && pk_is_const(ex, n, 2, i) &&
                    (!nz || pk_is_const(ex, n, 3, i));
        L.nmax = ws[i].N > L.nmax ? ws[i].N : L.nmax;
    }
    if (mode == Q_MODE_GATED && ws[0].N != ws[1].N)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s: gate and up weights differ in size (%lld vs %lld rows)", op,
                       (long long)ws[0].N, (long long)ws[1].N);
    if (!q_float(x->dtype))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA qlinear needs an f32/f16/bf16 input, got %s",
                       petrel_dtype_name(x->dtype));
    PT_TRY(pcu_linear_rows(ex, x, &L.x, &L.ldx, &L.M));
    L.xt = x;
    PT_TRY(pcu_prenorm_of(ex, n, 9, x, &L.pn));
    if (mode == Q_MODE_N) return q_linear_n(ex, n, x, &L, ws, nc);
    return q_linear_2(ex, n, x, &L, ws, mode == Q_MODE_GATED ? act : -1, mode == Q_MODE_BIAS);
}

/* ---- petrel.qembedding -------------------------------------------------------------- */

static petrel_status q_embedding(pt_exec *ex, const pt_node *n) {
    const char *op = "qembedding";
    q_embedding_args qa;
    PT_TRY(q_embedding_args_of(ex, n, &qa));
    const pt_tensor *ind = qa.ind;
    int64_t K = qa.K, G = qa.G;
    pt_qfmt fmt = qa.fmt;
    pcu_qweight w;
    PT_TRY(q_weight(ex, op, 0, fmt, G, K, qa.codes, qa.scales, qa.zero, &w));
    if (pcu_is_host_scalar(ind))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "%s: a Python number as indices is not supported on CUDA", op);
    if (!q_float(pk_out_dtype(ex, n, 0)))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA qembedding needs an f32/f16/bf16 output");
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, ind->rank + 1, qa.shape, &out));
    if (pt_numel(ind) == 0 || K == 0) return PETREL_OK;
    pt_tensor idx = *ind; /* dense for the kernel */
    if (!pt_is_contiguous(ind)) {
        int64_t s = 1;
        for (int i = idx.rank - 1; i >= 0; i--) idx.stride[i] = s, s *= idx.shape[i];
        if (!(idx.data = pk_dev_scratch(ex, (size_t)pt_numel(ind) * pt_elsize(ind))))
            return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for qembedding indices");
        PT_TRY(pcu_copy_into(ex, &idx, ind));
    }
    PCU_LAUNCHED(ex,
                 pcu_qembedding_launch(pcu_stream(ex), (int32_t)fmt, G, K, &w, idx.data, (int32_t)idx.dtype,
                                       pt_numel(ind), out->data, (int32_t)out->dtype),
                 "qembedding");
    return PETREL_OK;
}

/* ---- petrel.qexpert_linear ---------------------------------------------------------- */

/* The experts' weight checked as the CPU checks it (every expert's
 * matrices share one layout: expert 0's views stand for all), then one
 * launch of expert_k.cu's kernel. */
static petrel_status q_expert(pt_exec *ex, const pt_node *n) {
    const char *op = "qexpert_linear";
    q_expert_args qa;
    PT_TRY(q_expert_args_of(ex, n, &qa));
    pt_tensor v[3];
    q_weight_ref ref = {0};
    if (qa.E > 0) PT_TRY(q_expert_operand(ex, &qa, 0, v, &ref));
    const pt_tensor *x = qa.x;
    if (!q_float(x->dtype) || pk_out_dtype(ex, n, 0) != x->dtype)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA %s needs an f32/f16/bf16 input and output of its dtype", op);
    if (pcu_is_host_scalar(qa.ids) || (ref.tscale && pcu_is_host_scalar(ref.tscale)))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA %s needs device tensors as ids and zeros", op);
    if (qa.K > 1 && x->stride[1] != 1)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA %s needs x contiguous along K", op);
    int64_t N = qa.codes->shape[1], shape[2] = {qa.T, N};
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 2, shape, &out));
    if (qa.T == 0 || N == 0) return PETREL_OK;
    const pt_tensor *sc = qa.scales, *z = qa.zero && qa.zero->rank == 3 ? qa.zero : NULL;
    pcu_expert a = {.dtype = (int32_t)x->dtype, .x = x->data, .ldx = x->stride[0], .ids = qa.ids->data,
                    .ids_dtype = (int32_t)qa.ids->dtype, .ids_stride = qa.ids->stride[0], .T = qa.T, .E = qa.E,
                    .N = N, .K = qa.K, .out = out->data, .fmt = (int32_t)qa.fmt, .G = qa.G,
                    .codes = qa.codes->data, .c_se = qa.codes->stride[0], .c_sn = qa.codes->stride[1],
                    .scales = sc->data, .sdt = (int32_t)sc->dtype, .s_se = sc->stride[0], .s_sn = sc->stride[1],
                    .s_sg = sc->stride[2], .zeros = z ? (const int8_t *)z->data : NULL,
                    .z_se = z ? z->stride[0] : 0, .z_sn = z ? z->stride[1] : 0, .z_sg = z ? z->stride[2] : 0,
                    .t = ref.tscale ? (const float *)ref.tscale->data : NULL};
    size_t sb = pcu_expert_scratch(&a);
    void *scr = sb ? pk_dev_scratch(ex, sb) : NULL;
    if (sb && !scr) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for %s's row order", op);
    PCU_LAUNCHED(ex, pcu_expert_launch(pcu_stream(ex), &a, scr), op);
    return PETREL_OK;
}

/* ---- petrel.qkv_attn ---------------------------------------------------------------- */

/* t is a dense device vector of n elements of dtype dt. */
static bool q_dense_vec(const pt_tensor *t, petrel_dtype dt, int64_t n) {
    return t && t->dtype == dt && t->rank == 1 && t->shape[0] == n && t->stride[0] == 1 && !pcu_is_host_scalar(t);
}

/* The decode kernel's arguments (qkv_attn_k.h) for node n when it takes
 * it: one row of x, int4 codes in dense rows, program-constant weights,
 * the norm weight (if any) of x's dtype, caches of x's dtype with
 * contiguous rows, q/k norm weights (if any) of x's dtype, a rope row shared by the
 * heads; *fast false otherwise.  The projections' operands are checked
 * as qlinear checks them (a bad one fails the node); the attention's
 * are left to the two ops when the kernel does not take them. */
static petrel_status q_qkv_fast(pt_exec *ex, const pt_node *n, pcu_qkv_attn *a, bool *fast) {
    *fast = false;
    memset(a, 0, sizeof *a);
    q_qkv_nodes q;
    q_linear_args qa; /* the projections' operands, checked as qlinear checks them */
    PT_TRY(q_qkv_nodes_of(ex, n, &q));
    PT_TRY(q_linear_args_of(ex, &q.ln, &qa));
    const pt_tensor *x = qa.x, *kc = pk_tensor(ex, n, 4), *vc = pk_tensor(ex, n, 5);
    const pt_tensor *pos = pk_tensor(ex, n, 6), *mask = pk_tensor(ex, n, 7);
    const pt_tensor *rc = pk_tensor(ex, n, 10), *rs = pk_tensor(ex, n, 11);
    if (x->rank != 3 || x->shape[0] != 1 || x->shape[1] != 1 || !kc || !vc || !pos || kc->rank != 4 ||
        vc->rank != 4 || pos->rank != 1 || pos->shape[0] != 1 || !rc != !rs)
        return PETREL_OK;
    const petrel_dtype dt = x->dtype;
    const int64_t K = qa.K, G = qa.G, E = kc->shape[3], S = kc->shape[2], Hkv = kc->shape[1];
    const bool asym = qa.nz > 0;
    if ((dt != PETREL_DTYPE_F16 && dt != PETREL_DTYPE_BF16) || x->stride[2] != 1 || pk_out_dtype(ex, n, 0) != dt ||
        (qa.fmt != PT_QFMT_INT4 && qa.fmt != PT_QFMT_INT4S) || kc->dtype != dt || vc->dtype != dt ||
        kc->shape[0] != 1 || vc->shape[0] != 1 || vc->shape[1] != Hkv || vc->shape[2] != S || vc->shape[3] != E ||
        kc->stride[3] != 1 || vc->stride[3] != 1 || pcu_is_host_scalar(pos) || (mask && pcu_is_host_scalar(mask)))
        return PETREL_OK;
    pcu_qweight w[3];
    for (int i = 0; i < 3; i++) {
        if (!pk_is_const(ex, n, 1, i) || !pk_is_const(ex, n, 2, i) || (asym && !pk_is_const(ex, n, 3, i)) ||
            !qa.scales[i] || qa.scales[i]->dtype != dt)
            return PETREL_OK;
        PT_TRY(q_weight(ex, "qkv_attn", i, qa.fmt, G, K, qa.codes[i], qa.scales[i], asym ? qa.zeros[i] : NULL, &w[i]));
        if (w[i].code_rs != K / 2 || w[i].s_rs != K / G || w[i].s_cs != 1 ||
            (asym && (w[i].z_rs != K / G || w[i].z_cs != 1)))
            return PETREL_OK;
        a->codes[i] = w[i].codes, a->scales[i] = w[i].scales, a->zeros[i] = w[i].zeros;
    }
    if (E <= 0 || w[0].N % E || w[1].N != Hkv * E || w[2].N != Hkv * E) return PETREL_OK;
    const int64_t Hq = w[0].N / E;
    if (pk_bool(ex, n, 20)) {
        const pt_tensor *nw = pk_tensor(ex, n, 21);
        if (!q_dense_vec(nw, dt, K)) return PETREL_OK;
        a->norm_w = nw->data, a->norm_eps = (float)pk_float(ex, n, 22), a->norm_add_one = pk_bool(ex, n, 23);
    }
    if (pk_bool(ex, n, 12)) { /* the q/k norm: weights of x's dtype, its rounding to that dtype or none */
        const pt_tensor *qw = pk_tensor(ex, n, 13), *kw = pk_tensor(ex, n, 14);
        const int ndt = pk_dtype(ex, n, 17);
        if (!q_dense_vec(qw, dt, E) || !q_dense_vec(kw, dt, E) || (ndt >= 0 && ndt != (int)dt)) return PETREL_OK;
        a->qnw = qw->data, a->knw = kw->data, a->neps = (float)pk_float(ex, n, 15);
        a->nadd_one = pk_bool(ex, n, 16), a->nround = ndt >= 0;
    }
    if (mask) {
        int64_t ms[4] = {1, Hq, 1, S};
        pt_tensor m;
        if (!pt_broadcast_to(mask, 4, ms, &m)) return PETREL_OK;
        a->mask = m.data, a->mask_dtype = (int32_t)m.dtype, a->m_hs = m.stride[1], a->m_ss = m.stride[3];
    }
    if (rc) {
        int64_t R = rc->rank ? rc->shape[rc->rank - 1] : 0, rsh[4] = {1, Hq, 1, R};
        pt_tensor cb, sb;
        if (rc->rank < 1 || rs->rank < 1 || rc->rank > 4 || rs->rank > 4 || !pt_broadcast_to(rc, 4, rsh, &cb) ||
            !pt_broadcast_to(rs, 4, rsh, &sb) || cb.dtype != dt || sb.dtype != dt || cb.stride[3] != 1 ||
            sb.stride[3] != 1 || pcu_is_host_scalar(rc) || pcu_is_host_scalar(rs))
            return PETREL_OK;
        a->rcos = cb.data, a->rsin = sb.data, a->R = (int32_t)R;
    }
    a->dtype = (int32_t)dt, a->x = x->data, a->K = K, a->fmt = (int32_t)qa.fmt, a->G = (int32_t)G;
    a->Hq = (int32_t)Hq, a->Hkv = (int32_t)Hkv, a->E = (int32_t)E;
    a->kc = kc->data, a->vc = vc->data, a->k_hs = kc->stride[1], a->k_ss = kc->stride[2];
    a->v_hs = vc->stride[1], a->v_ss = vc->stride[2], a->S = S;
    a->pos = pos->data, a->pos_dt = (int32_t)pos->dtype;
    a->causal = pk_bool(ex, n, 9);
    a->scale = (float)(pk_is_none(ex, n, 8) ? 1.0 / sqrt((double)E) : pk_float(ex, n, 8));
    /* the executor's short range of positions only: its attention takes a
     * warp per query row as the decode kernel's does there; from longer
     * contexts the decode kernel's rows per warp read the cache once for
     * the group (H100, Llama-3.2-1B int4e from a 1,536-token prompt: 1,484
     * tok/s fused against 1,506 as two launches) */
    a->keys_below = pk_pos_bound(ex);
    *fast = a->keys_below > 0 && pcu_qkv_attn_fits(a);
    return PETREL_OK;
}

/* One decode row on the fused kernel; anything else as the two ops'
 * launches (quant_plan.h). */
static petrel_status q_qkv_attn(pt_exec *ex, const pt_node *n) {
    pcu_qkv_attn a;
    bool fast;
    PT_TRY(q_qkv_fast(ex, n, &a, &fast));
    if (!fast) return q_qkv_attn_composed(ex, n, cuda_k_quant, cuda_k_fused);
    int64_t oshape[4] = {1, a.Hq, 1, a.E}, N[3] = {(int64_t)a.Hq * a.E, (int64_t)a.Hkv * a.E, (int64_t)a.Hkv * a.E};
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 4, oshape, &out));
    a.out = out->data;
    for (int k = 0; k < 3; k++) {
        int64_t ps[3] = {1, 1, N[k]};
        pt_tensor *p;
        PT_TRY(pk_out_alloc(ex, n, 1 + k, 3, ps, &p));
        a.p[k] = p->data;
        pt_tensor pc = *p;
        PT_TRY(q_qkv_heads(ex, n, 1 + k, &pc, a.E));
    }
    PCU_LAUNCHED(ex, pcu_qkv_attn_launch(pcu_stream(ex), &a), "qkv_attn");
    return PETREL_OK;
}

/*
** Kernel family "quant" on CUDA: petrel.qlinear (modes n, gated, add),
** petrel.qembedding and petrel.qexpert_linear.  Every operand is checked before anything is
** launched; a bad one fails the node with the CPU kernel's message.
*/
petrel_status cuda_k_quant(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_PETREL_QLINEAR: return q_linear(ex, n);
    case PETREL_OP_PETREL_QEMBEDDING: return q_embedding(ex, n);
    case PETREL_OP_PETREL_QEXPERT_LINEAR: return q_expert(ex, n);
    case PETREL_OP_PETREL_QKV_ATTN: return q_qkv_attn(ex, n);
    default: return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a CUDA quant op", (int)n->op);
    }
}
