/*
** norm.c -- CPU reference kernels for normalization layers: layer_norm,
** native_layer_norm, rms_norm, _fused_rms_norm, batch_norm (inference, or
** batch statistics when training=True), _native_batch_norm_legit_no_training,
** group_norm and native_group_norm.  Statistics are computed in double with
** the biased variance (divide by the count), as torch does for the forward
** pass.  Part of the CPU backend.
*/
#include <math.h>

#include "nn_util.h"

/* Optional per-feature parameter (weight / bias / running stat) as `count`
 * doubles, or NULL when the argument is None.  Fails (returning false) when
 * its element count differs. */
static bool norm_param(pt_exec *ex, const pt_node *n, int a, int64_t count, double **out) {
    *out = NULL;
    const pt_tensor *t = pk_tensor(ex, n, a);
    if (!t) return true;
    if (pt_numel(t) != count) return false;
    *out = nu_load_f64(ex, t);
    return *out != NULL;
}

/* Allocate output k (when used) and store doubles into it. */
static petrel_status norm_emit(pt_exec *ex, const pt_node *n, int k, int rank,
                               const int64_t *shape, const double *v) {
    if (!nu_out_used(n, k)) return PETREL_OK;
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, k, rank, shape, &out));
    nu_store_f64(out, v);
    return PETREL_OK;
}

/* rms_norm's default epsilon: torch.finfo of the dtype it computes in,
 * which is float32 for f16/bf16/f32 inputs (torch 2.11 eager and its
 * decomposition agree on this), float64 for f64. */
static double norm_dtype_eps(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F64 ? 2.220446049250313e-16 : 1.1920928955078125e-07;
}

/* Layer norm and RMS norm over the trailing dims named by
 * normalized_shape (argument 1): x (M, D) viewed row-major.
 * Outputs: 0 = normalized x; for native_layer_norm 1 = mean, 2 = rstd, for
 * _fused_rms_norm 1 = rstd; the statistics have shape x.shape[:axis] +
 * [1] * len(normalized_shape). */
static petrel_status norm_last_dims(pt_exec *ex, const pt_node *n, bool rms) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_SHAPE, "input is None");
    int64_t ns[PETREL_MAX_RANK * 2];
    int k = pk_ints(ex, n, 1, ns, PETREL_MAX_RANK * 2);
    int axis = x->rank - k;
    if (k < 0 || axis < 0)
        return pk_fail(ex, PETREL_ERR_SHAPE, "normalized_shape longer than the input's rank");
    for (int i = 0; i < k; i++)
        if (x->shape[axis + i] != ns[i])
            return pk_fail(ex, PETREL_ERR_SHAPE,
                           "input dim %d is %lld but normalized_shape says %lld", axis + i,
                           (long long)x->shape[axis + i], (long long)ns[i]);
    int64_t M = nu_prod(x->shape, axis), D = nu_prod(ns, k);
    double eps;
    double *w, *b = NULL;
    if (!norm_param(ex, n, 2, D, &w))
        return pk_fail(ex, PETREL_ERR_SHAPE, "weight does not match normalized_shape");
    if (rms) {
        eps = pk_is_none(ex, n, 3) ? norm_dtype_eps(x->dtype) : pk_float(ex, n, 3);
    } else {
        if (!norm_param(ex, n, 3, D, &b))
            return pk_fail(ex, PETREL_ERR_SHAPE, "bias does not match normalized_shape");
        eps = pk_float(ex, n, 4);
    }
    double *xd = nu_load_f64(ex, x);                              /* (M, D) */
    double *yd = (double *)nu_scratch(ex, M * D, sizeof(double)); /* (M, D) */
    double *mean = (double *)nu_scratch(ex, M, sizeof(double));  /* (M) */
    double *rstd = (double *)nu_scratch(ex, M, sizeof(double));  /* (M) */
    if (!xd || !yd || !mean || !rstd) return NU_NOMEM(ex);
    for (int64_t m = 0; m < M; m++) {
        const double *row = xd + m * D;
        double mu = 0.0, var = 0.0;
        if (!rms) {
            for (int64_t d = 0; d < D; d++) mu += row[d];
            mu = D > 0 ? mu / (double)D : 0.0;
        }
        for (int64_t d = 0; d < D; d++) var += (row[d] - mu) * (row[d] - mu);
        var = D > 0 ? var / (double)D : 0.0;
        double r = 1.0 / sqrt(var + eps);
        for (int64_t d = 0; d < D; d++) {
            double v = (row[d] - mu) * r;
            if (w) v *= w[d];
            if (b) v += b[d];
            yd[m * D + d] = v;
        }
        mean[m] = mu;
        rstd[m] = r;
    }
    PT_TRY(norm_emit(ex, n, 0, x->rank, x->shape, yd));
    int64_t sshape[PETREL_MAX_RANK];
    for (int i = 0; i < x->rank; i++) sshape[i] = i < axis ? x->shape[i] : 1;
    if (n->op == PETREL_OP_NATIVE_LAYER_NORM) {
        PT_TRY(norm_emit(ex, n, 1, x->rank, sshape, mean));
        PT_TRY(norm_emit(ex, n, 2, x->rank, sshape, rstd));
    } else if (n->op == PETREL_OP_FUSED_RMS_NORM) {
        PT_TRY(norm_emit(ex, n, 1, x->rank, sshape, rstd));
    }
    return PETREL_OK;
}

/* Batch norm over channel dim 1 of x (N, C, *).  Uses the running
 * statistics, or the batch's own (biased) statistics when `training`
 * (running stats are not updated: the inputs are read-only here). */
static petrel_status norm_batch(pt_exec *ex, const pt_node *n, bool training, double eps) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x || x->rank < 2)
        return pk_fail(ex, PETREL_ERR_SHAPE, "batch_norm expects an input of rank >= 2");
    int64_t N = x->shape[0], C = x->shape[1], HW = nu_prod(x->shape + 2, x->rank - 2);
    double *w, *b, *rm, *rv;
    if (!norm_param(ex, n, 1, C, &w) || !norm_param(ex, n, 2, C, &b) ||
        !norm_param(ex, n, 3, C, &rm) || !norm_param(ex, n, 4, C, &rv))
        return pk_fail(ex, PETREL_ERR_SHAPE, "batch_norm parameters must have %lld elements",
                       (long long)C);
    if (!training && (!rm || !rv))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "batch_norm without running stats needs training");
    double *xd = nu_load_f64(ex, x); /* (N, C, HW) */
    double *yd = (double *)nu_scratch(ex, N * C * HW, sizeof(double));
    if (!xd || !yd) return NU_NOMEM(ex);
    for (int64_t c = 0; c < C; c++) {
        double mu, var;
        if (training) {
            int64_t cnt = N * HW;
            mu = 0.0, var = 0.0;
            for (int64_t i = 0; i < N; i++)
                for (int64_t j = 0; j < HW; j++) mu += xd[(i * C + c) * HW + j];
            mu = cnt > 0 ? mu / (double)cnt : 0.0;
            for (int64_t i = 0; i < N; i++)
                for (int64_t j = 0; j < HW; j++) {
                    double dv = xd[(i * C + c) * HW + j] - mu;
                    var += dv * dv;
                }
            var = cnt > 0 ? var / (double)cnt : 0.0;
        } else {
            mu = rm[c], var = rv[c];
        }
        double scale = 1.0 / sqrt(var + eps);
        if (w) scale *= w[c];
        double shift = b ? b[c] : 0.0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < HW; j++) {
                int64_t o = (i * C + c) * HW + j;
                yd[o] = (xd[o] - mu) * scale + shift;
            }
    }
    PT_TRY(norm_emit(ex, n, 0, x->rank, x->shape, yd));
    if (n->op == PETREL_OP_BATCH_NORM_NO_TRAINING) {
        /* torch's CPU inference path returns empty save_mean / save_invstd */
        int64_t zero = 0;
        for (int k = 1; k <= 2; k++) {
            if (!nu_out_used(n, k)) continue;
            pt_tensor *o;
            PT_TRY(pk_out_alloc(ex, n, k, 1, &zero, &o));
        }
    }
    return PETREL_OK;
}

/* Group norm: x viewed as (N, G, C/G * HW); per-channel affine after.
 * native_group_norm also returns mean and rstd of shape (N, G). */
static petrel_status norm_group(pt_exec *ex, const pt_node *n, const pt_tensor *x, int64_t N,
                                int64_t C, int64_t HW, int64_t G, double eps) {
    if (G < 1 || C % G != 0)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%lld channels do not split into %lld groups",
                       (long long)C, (long long)G);
    if (pt_numel(x) != N * C * HW)
        return pk_fail(ex, PETREL_ERR_SHAPE, "group_norm input does not have N*C*HxW elements");
    double *w, *b;
    if (!norm_param(ex, n, n->op == PETREL_OP_GROUP_NORM ? 2 : 1, C, &w) ||
        !norm_param(ex, n, n->op == PETREL_OP_GROUP_NORM ? 3 : 2, C, &b))
        return pk_fail(ex, PETREL_ERR_SHAPE, "group_norm weight/bias must have %lld elements",
                       (long long)C);
    int64_t cg = C / G, gs = cg * HW;
    double *xd = nu_load_f64(ex, x); /* (N, G, cg, HW) */
    double *yd = (double *)nu_scratch(ex, N * C * HW, sizeof(double));
    double *mean = (double *)nu_scratch(ex, N * G, sizeof(double)); /* (N, G) */
    double *rstd = (double *)nu_scratch(ex, N * G, sizeof(double)); /* (N, G) */
    if (!xd || !yd || !mean || !rstd) return NU_NOMEM(ex);
    for (int64_t i = 0; i < N * G; i++) {
        const double *xg = xd + i * gs;
        double mu = 0.0, var = 0.0;
        for (int64_t j = 0; j < gs; j++) mu += xg[j];
        mu = gs > 0 ? mu / (double)gs : 0.0;
        for (int64_t j = 0; j < gs; j++) var += (xg[j] - mu) * (xg[j] - mu);
        var = gs > 0 ? var / (double)gs : 0.0;
        double r = 1.0 / sqrt(var + eps);
        for (int64_t j = 0; j < gs; j++) {
            int64_t c = (i % G) * cg + j / HW;
            double v = (xg[j] - mu) * r;
            if (w) v *= w[c];
            if (b) v += b[c];
            yd[i * gs + j] = v;
        }
        mean[i] = mu;
        rstd[i] = r;
    }
    PT_TRY(norm_emit(ex, n, 0, x->rank, x->shape, yd));
    if (n->op == PETREL_OP_NATIVE_GROUP_NORM) {
        int64_t sshape[2] = {N, G};
        PT_TRY(norm_emit(ex, n, 1, 2, sshape, mean));
        PT_TRY(norm_emit(ex, n, 2, 2, sshape, rstd));
    }
    return PETREL_OK;
}

/*
** Kernel family "norm": layer / RMS / batch / group normalization, in the
** composite and the native (statistics-returning) spellings.
*/
petrel_status cpu_k_norm(pt_exec *ex, const pt_node *n) {
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
    case PETREL_OP_GROUP_NORM: {
        const pt_tensor *x = pk_tensor(ex, n, 0);
        if (!x || x->rank < 2)
            return pk_fail(ex, PETREL_ERR_SHAPE, "group_norm expects an input of rank >= 2");
        return norm_group(ex, n, x, x->shape[0], x->shape[1],
                          nu_prod(x->shape + 2, x->rank - 2), pk_int(ex, n, 1), pk_float(ex, n, 4));
    }
    case PETREL_OP_NATIVE_GROUP_NORM: {
        const pt_tensor *x = pk_tensor(ex, n, 0);
        if (!x) return pk_fail(ex, PETREL_ERR_SHAPE, "input is None");
        return norm_group(ex, n, x, pk_int(ex, n, 3), pk_int(ex, n, 4), pk_int(ex, n, 5),
                          pk_int(ex, n, 6), pk_float(ex, n, 7));
    }
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a normalization", (int)n->op);
    }
}
