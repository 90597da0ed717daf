/*
** norm.c -- CUDA kernels for normalization layers: layer_norm,
** native_layer_norm, rms_norm, _fused_rms_norm, batch_norm (running
** statistics, or the batch's own when training=True),
** _native_batch_norm_legit_no_training, group_norm and native_group_norm,
** for f32 / f16 / bf16.  Same argument handling, shapes and statistics
** outputs as the CPU reference (cpu/ops/norm.c); statistics in fp32 with
** the biased variance.  Part of the CUDA backend.
**
** The kernels (norm_k.cu) read dense inputs: a strided input or parameter
** is first copied to device scratch.
*/
#include "../cuda.h"
#include "norm_k.h"

/* t itself when dense, else a dense copy of it in device scratch (*out). */
static petrel_status norm_dense(pt_exec *ex, const pt_tensor *t, pt_tensor *out) {
    *out = *t;
    if (pt_is_contiguous(t)) return PETREL_OK;
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
        out->stride[i] = s;
        s *= t->shape[i] > 1 ? t->shape[i] : 1;
    }
    out->data = pk_dev_scratch(ex, (size_t)s * pt_elsize(t));
    if (!out->data) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a norm operand");
    return pcu_copy_into(ex, out, t);
}

/* Optional per-feature parameter argument `a` with `count` elements as a
 * dense device vector: *data NULL when None. */
static petrel_status norm_param(pt_exec *ex, const pt_node *n, int a, int64_t count, const char *what,
                                const void **data, int32_t *dt) {
    *data = NULL;
    *dt = PETREL_DTYPE_F32;
    const pt_tensor *t = pk_tensor(ex, n, a);
    if (!t) return PETREL_OK;
    if (pt_numel(t) != count)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%s must have %lld elements", what, (long long)count);
    if (pcu_is_host_scalar(t)) return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "%s as a Python number", what);
    pt_tensor d;
    PT_TRY(norm_dense(ex, t, &d));
    *data = d.data;
    *dt = d.dtype;
    return PETREL_OK;
}

/* The input (argument 0) as a dense float tensor. */
static petrel_status norm_input(pt_exec *ex, const pt_node *n, int min_rank, pt_tensor *x) {
    const pt_tensor *t = pk_tensor(ex, n, 0);
    if (!t || t->rank < min_rank)
        return pk_fail(ex, PETREL_ERR_SHAPE, "normalization input must have rank >= %d", min_rank);
    if (t->dtype != PETREL_DTYPE_F32 && t->dtype != PETREL_DTYPE_F16 && t->dtype != PETREL_DTYPE_BF16)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA normalization needs an f32/f16/bf16 input");
    return norm_dense(ex, t, x);
}

/* Allocate statistics output k (when the node uses it): *data NULL when not. */
static petrel_status norm_stat_out(pt_exec *ex, const pt_node *n, int k, int rank, const int64_t *shape,
                                   void **data, int32_t *dt) {
    *data = NULL;
    *dt = PETREL_DTYPE_F32;
    if (k >= n->nout || n->outs[k] < 0) return PETREL_OK;
    pt_tensor *o;
    PT_TRY(pk_out_alloc(ex, n, k, rank, shape, &o));
    if (pt_numel(o) > 0) *data = o->data, *dt = o->dtype;
    return PETREL_OK;
}

/* rms_norm's default epsilon: torch.finfo of the dtype it computes in
 * (float32 for every input dtype supported here). */
#define NORM_F32_EPS 1.1920928955078125e-07

/* Layer norm and RMS norm over the trailing dims named by normalized_shape
 * (argument 1): x (M, D) viewed row-major.  Outputs: 0 = normalized x; for
 * native_layer_norm 1 = mean, 2 = rstd, for _fused_rms_norm 1 = rstd; the
 * statistics have shape x.shape[:axis] + [1] * len(normalized_shape). */
static petrel_status norm_last_dims(pt_exec *ex, const pt_node *n, bool rms) {
    pt_tensor x;
    PT_TRY(norm_input(ex, n, 0, &x));
    int64_t ns[PETREL_MAX_RANK * 2];
    int k = pk_ints(ex, n, 1, ns, PETREL_MAX_RANK * 2);
    int axis = x.rank - k;
    if (k < 0 || axis < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "normalized_shape longer than the input's rank");
    int64_t M = 1, D = 1;
    for (int i = 0; i < k; i++) {
        if (x.shape[axis + i] != ns[i])
            return pk_fail(ex, PETREL_ERR_SHAPE, "input dim %d is %lld but normalized_shape says %lld", axis + i,
                           (long long)x.shape[axis + i], (long long)ns[i]);
        D *= ns[i];
    }
    for (int i = 0; i < axis; i++) M *= x.shape[i];
    if (M > INT32_MAX) return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "more than 2^31 rows to normalize");
    pcu_rownorm a = {.x = x.data, .xdt = x.dtype, .M = M, .D = D, .rms = rms, .norm_dtype = -1};
    PT_TRY(norm_param(ex, n, 2, D, "weight", &a.w, &a.wdt));
    if (rms) {
        a.eps = (float)(pk_is_none(ex, n, 3) ? NORM_F32_EPS : pk_float(ex, n, 3));
    } else {
        PT_TRY(norm_param(ex, n, 3, D, "bias", &a.b, &a.bdt));
        a.eps = (float)pk_float(ex, n, 4);
    }
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x.rank, x.shape, &out));
    a.out = out->data, a.odt = out->dtype;
    int64_t sshape[PETREL_MAX_RANK];
    for (int i = 0; i < x.rank; i++) sshape[i] = i < axis ? x.shape[i] : 1;
    if (n->op == PETREL_OP_NATIVE_LAYER_NORM) {
        PT_TRY(norm_stat_out(ex, n, 1, x.rank, sshape, &a.mean, &a.mean_dt));
        PT_TRY(norm_stat_out(ex, n, 2, x.rank, sshape, &a.rstd, &a.rstd_dt));
    } else if (n->op == PETREL_OP_FUSED_RMS_NORM) {
        PT_TRY(norm_stat_out(ex, n, 1, x.rank, sshape, &a.rstd, &a.rstd_dt));
    }
    PCU_LAUNCHED(ex, pcu_rownorm_launch(pcu_stream(ex), &a), "rownorm");
    return PETREL_OK;
}

/* Batch norm over channel dim 1 of x (N, C, *).  Uses the running
 * statistics, or the batch's own (biased) statistics when `training`
 * (running stats are not updated: the inputs are read-only here). */
static petrel_status norm_batch(pt_exec *ex, const pt_node *n, bool training, double eps) {
    pt_tensor x;
    PT_TRY(norm_input(ex, n, 2, &x));
    int64_t N = x.shape[0], C = x.shape[1], HW = 1;
    for (int i = 2; i < x.rank; i++) HW *= x.shape[i];
    pcu_segnorm a = {.x = x.data, .xdt = x.dtype, .nseg = C, .pieces = N, .inner = HW, .seg_stride = HW,
                     .piece_stride = C * HW, .chan_mod = C > 0 ? C : 1, .chan_mul = 1, .chan_piece = 0,
                     .eps = (float)eps};
    const char *what = "batch_norm parameters";
    PT_TRY(norm_param(ex, n, 1, C, what, &a.w, &a.wdt));
    PT_TRY(norm_param(ex, n, 2, C, what, &a.b, &a.bdt));
    PT_TRY(norm_param(ex, n, 3, C, what, &a.run_mean, &a.rmdt));
    PT_TRY(norm_param(ex, n, 4, C, what, &a.run_var, &a.rvdt));
    if (!training && (!a.run_mean || !a.run_var))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "batch_norm without running stats needs training");
    if (training) a.run_mean = a.run_var = NULL;
    if (C > INT32_MAX) return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "more than 2^31 channels");
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x.rank, x.shape, &out));
    a.out = out->data, a.odt = out->dtype;
    if (n->op == PETREL_OP_BATCH_NORM_NO_TRAINING) {
        /* torch's inference path returns empty save_mean / save_invstd */
        int64_t zero = 0;
        void *unused;
        int32_t udt;
        for (int k = 1; k <= 2; k++) PT_TRY(norm_stat_out(ex, n, k, 1, &zero, &unused, &udt));
    }
    if (pt_numel(out) == 0) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_segnorm_launch(pcu_stream(ex), &a), "batch_norm");
    return PETREL_OK;
}

/* Group norm: x viewed as (N, G, C/G * HW); per-channel affine after.
 * native_group_norm also returns mean and rstd of shape (N, G). */
static petrel_status norm_group(pt_exec *ex, const pt_node *n, const pt_tensor *x, int64_t N, int64_t C, int64_t HW,
                                int64_t G, double eps) {
    if (G < 1 || C % G != 0)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%lld channels do not split into %lld groups", (long long)C,
                       (long long)G);
    if (pt_numel(x) != N * C * HW)
        return pk_fail(ex, PETREL_ERR_SHAPE, "group_norm input does not have N*C*HxW elements");
    if (N * G > INT32_MAX) return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "more than 2^31 groups");
    int64_t cg = C / G;
    pcu_segnorm a = {.x = x->data, .xdt = x->dtype, .nseg = N * G, .pieces = cg, .inner = HW, .seg_stride = cg * HW,
                     .piece_stride = HW, .chan_mod = G, .chan_mul = cg, .chan_piece = 1, .eps = (float)eps};
    int wa = n->op == PETREL_OP_GROUP_NORM ? 2 : 1;
    PT_TRY(norm_param(ex, n, wa, C, "group_norm weight", &a.w, &a.wdt));
    PT_TRY(norm_param(ex, n, wa + 1, C, "group_norm bias", &a.b, &a.bdt));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    a.out = out->data, a.odt = out->dtype;
    if (n->op == PETREL_OP_NATIVE_GROUP_NORM) {
        int64_t sshape[2] = {N, G};
        PT_TRY(norm_stat_out(ex, n, 1, 2, sshape, &a.mean, &a.mean_dt));
        PT_TRY(norm_stat_out(ex, n, 2, 2, sshape, &a.rstd, &a.rstd_dt));
    }
    PCU_LAUNCHED(ex, pcu_segnorm_launch(pcu_stream(ex), &a), "group_norm");
    return PETREL_OK;
}

/*
** Kernel family "norm": layer / RMS / batch / group normalization, in the
** composite and the native (statistics-returning) spellings.
*/
petrel_status cuda_k_norm(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_LAYER_NORM:
    case PETREL_OP_NATIVE_LAYER_NORM:
        return norm_last_dims(ex, n, false);
    case PETREL_OP_RMS_NORM:
    case PETREL_OP_FUSED_RMS_NORM:
        return norm_last_dims(ex, n, true);
    case PETREL_OP_BATCH_NORM:
        return norm_batch(ex, n, pk_bool(ex, n, 5), pk_float(ex, n, 7));
    case PETREL_OP_BATCH_NORM_NO_TRAINING:
        return norm_batch(ex, n, false, pk_float(ex, n, 6));
    case PETREL_OP_GROUP_NORM:
    case PETREL_OP_NATIVE_GROUP_NORM: {
        pt_tensor x;
        PT_TRY(norm_input(ex, n, n->op == PETREL_OP_GROUP_NORM ? 2 : 0, &x));
        if (n->op == PETREL_OP_GROUP_NORM) {
            int64_t HW = 1;
            for (int i = 2; i < x.rank; i++) HW *= x.shape[i];
            return norm_group(ex, n, &x, x.shape[0], x.shape[1], HW, pk_int(ex, n, 1), pk_float(ex, n, 4));
        }
        return norm_group(ex, n, &x, pk_int(ex, n, 3), pk_int(ex, n, 4), pk_int(ex, n, 5), pk_int(ex, n, 6),
                          pk_float(ex, n, 7));
    }
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a CUDA normalization", (int)n->op);
    }
}
