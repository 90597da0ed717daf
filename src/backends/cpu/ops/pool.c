/*
** pool.c -- CPU reference kernels for pooling: max_pool2d (with and
** without indices), avg_pool2d, adaptive_avg_pool2d and
** adaptive_avg_pool1d.  Inputs are (N, C, H, W) or unbatched (C, H, W)
** ((N, C, L) / (C, L) for 1-d); every (n, c) plane is pooled on its own.
** Window rules follow ATen's CPU kernels so padding, dilation and
** ceil_mode edge windows give the same values.  Part of the CPU backend.
*/
#include <math.h>

#include "nn_util.h"

/* ATen's pooling_output_shape: floor (or ceil) of the window count, where
 * in ceil mode the last window must still start inside the input or the
 * left padding. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil,
                             bool ceil_mode) {
    int64_t num = in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
    int64_t q = num / stride;
    if ((num % stride != 0) && (num < 0)) q--; /* floor division */
    int64_t o = q + 1;
    if (ceil_mode && (o - 1) * stride >= in + pad) o--;
    return o;
}

/* Parameters of a 2-d sliding window pool. */
typedef struct pool_geom {
    int64_t planes, H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    bool ceil_mode;
} pool_geom;

/* Read kernel_size / stride / padding (/ dilation when a_dil >= 0) of an
 * S-d pool (S = 1 or 2) and the input geometry.  An empty stride means
 * stride = kernel_size.  A 1-d pool is run as a 2-d one over (1, L) planes.
 * Output shape goes to (rank, shape). */
static petrel_status pool_read(pt_exec *ex, const pt_node *n, const pt_tensor *x, int S,
                               int a_dil, int a_ceil, pool_geom *g, int *rank, int64_t *shape) {
    /* index 0 is H, 1 is W; a 1-d pool fills only W */
    int64_t k[2] = {1, 1}, s[2] = {1, 1}, p[2] = {0, 0}, d[2] = {1, 1};
    int64_t tmp[PETREL_MAX_RANK * 2];
    int o = 2 - S;
    if (!nu_ints_n(ex, n, 1, S, k + o))
        return pk_fail(ex, PETREL_ERR_SHAPE, "kernel_size must have 1 or %d values", S);
    int c = pk_ints(ex, n, 2, tmp, PETREL_MAX_RANK * 2);
    if (c == 0)
        s[0] = k[0], s[1] = k[1];
    else if (!nu_ints_n(ex, n, 2, S, s + o))
        return pk_fail(ex, PETREL_ERR_SHAPE, "stride must have 0, 1 or %d values", S);
    if (!nu_ints_n(ex, n, 3, S, p + o))
        return pk_fail(ex, PETREL_ERR_SHAPE, "padding must have 1 or %d values", S);
    if (a_dil >= 0 && !nu_ints_n(ex, n, a_dil, S, d + o))
        return pk_fail(ex, PETREL_ERR_SHAPE, "dilation must have 1 or %d values", S);
    g->ceil_mode = pk_bool(ex, n, a_ceil);
    if (x->rank != S + 1 && x->rank != S + 2)
        return pk_fail(ex, PETREL_ERR_SHAPE, "%d-d pooling expects a %d-D or %d-D input, got %d-D",
                       S, S + 1, S + 2, x->rank);
    for (int i = 0; i < 2; i++) {
        if (k[i] < 1 || s[i] < 1 || d[i] < 1 || p[i] < 0)
            return pk_fail(ex, PETREL_ERR_SHAPE, "invalid kernel_size/stride/padding/dilation");
        if (p[i] * 2 > k[i])
            return pk_fail(ex, PETREL_ERR_SHAPE, "pad should be at most half of kernel size");
    }
    g->kh = k[0], g->kw = k[1], g->sh = s[0], g->sw = s[1];
    g->ph = p[0], g->pw = p[1], g->dh = d[0], g->dw = d[1];
    int r = x->rank;
    g->H = S == 2 ? x->shape[r - 2] : 1;
    g->W = x->shape[r - 1];
    g->planes = nu_prod(x->shape, r - S);
    g->OH = pool_out_size(g->H, g->kh, g->ph, g->sh, g->dh, g->ceil_mode);
    g->OW = pool_out_size(g->W, g->kw, g->pw, g->sw, g->dw, g->ceil_mode);
    if (g->OH < 1 || g->OW < 1)
        return pk_fail(ex, PETREL_ERR_SHAPE, "pooling output size is too small (%lldx%lld)",
                       (long long)g->OH, (long long)g->OW);
    *rank = r;
    for (int i = 0; i < r - S; i++) shape[i] = x->shape[i];
    if (S == 2) shape[r - 2] = g->OH;
    shape[r - 1] = g->OW;
    return PETREL_OK;
}

/* Max over each dilated window; NaN wins (and the last NaN's index is
 * kept), as in ATen.  Indices are flat h * W + w within the plane. */
static void pool_max(const pool_geom *g, const double *x, double *y, int64_t *ind) {
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const double *xp = x + pl * g->H * g->W;
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;
                int64_t h1 = h0 + (g->kh - 1) * g->dh + 1, w1 = w0 + (g->kw - 1) * g->dw + 1;
                if (h1 > g->H) h1 = g->H;
                if (w1 > g->W) w1 = g->W;
                while (h0 < 0) h0 += g->dh;
                while (w0 < 0) w0 += g->dw;
                double best = -INFINITY;
                int64_t besti = h0 * g->W + w0;
                for (int64_t h = h0; h < h1; h += g->dh)
                    for (int64_t w = w0; w < w1; w += g->dw) {
                        double v = xp[h * g->W + w];
                        if (v > best || isnan(v)) {
                            best = v;
                            besti = h * g->W + w;
                        }
                    }
                int64_t o = (pl * g->OH + oh) * g->OW + ow;
                y[o] = best;
                if (ind) ind[o] = besti;
            }
    }
}

/* Average over each window.  The divisor is divisor_override when given
 * (> 0), else the window clipped to input+padding (count_include_pad) or
 * to the input alone. */
static void pool_avg(const pool_geom *g, const double *x, double *y, bool count_include_pad,
                     int64_t divisor_override) {
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const double *xp = x + pl * g->H * g->W;
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++) {
                int64_t h0 = oh * g->sh - g->ph, w0 = ow * g->sw - g->pw;
                int64_t h1 = h0 + g->kh, w1 = w0 + g->kw;
                if (h1 > g->H + g->ph) h1 = g->H + g->ph;
                if (w1 > g->W + g->pw) w1 = g->W + g->pw;
                int64_t pool_size = (h1 - h0) * (w1 - w0);
                if (h0 < 0) h0 = 0;
                if (w0 < 0) w0 = 0;
                if (h1 > g->H) h1 = g->H;
                if (w1 > g->W) w1 = g->W;
                int64_t o = (pl * g->OH + oh) * g->OW + ow;
                if (h0 >= h1 || w0 >= w1) {
                    y[o] = 0.0;
                    continue;
                }
                double sum = 0.0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) sum += xp[h * g->W + w];
                int64_t div = divisor_override > 0 ? divisor_override
                              : count_include_pad  ? pool_size
                                                   : (h1 - h0) * (w1 - w0);
                y[o] = sum / (double)div;
            }
    }
}

/* Adaptive average over (planes, H, W) -> (planes, OH, OW): output cell i
 * averages input rows floor(i*H/OH) .. ceil((i+1)*H/OH) - 1 (same for W). */
static void pool_adaptive_avg(int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                              const double *x, double *y) {
    for (int64_t pl = 0; pl < planes; pl++) {
        const double *xp = x + pl * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * H / OH, h1 = ((oh + 1) * H + OH - 1) / OH;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * W / OW, w1 = ((ow + 1) * W + OW - 1) / OW;
                double sum = 0.0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) sum += xp[h * W + w];
                y[(pl * OH + oh) * OW + ow] = sum / (double)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

/* Allocate output k and store doubles into it. */
static petrel_status pool_emit(pt_exec *ex, const pt_node *n, int k, int rank,
                               const int64_t *shape, const double *v) {
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, k, rank, shape, &out));
    nu_store_f64(out, v);
    return PETREL_OK;
}

/* Sliding-window max or average pool over S spatial dims (S = 1 or 2).
 * Schemas: max (self, kernel_size, stride, padding, dilation, ceil_mode),
 * avg (self, kernel_size, stride, padding, ceil_mode, count_include_pad
 * [, divisor_override]).  max_pool2d_with_indices also writes output 1. */
static petrel_status pool_window(pt_exec *ex, const pt_node *n, const pt_tensor *x, int S,
                                 bool is_max) {
    pool_geom g = {0};
    int64_t shape[PETREL_MAX_RANK];
    int rank = 0;
    PT_TRY(pool_read(ex, n, x, S, is_max ? 4 : -1, is_max ? 5 : 4, &g, &rank, shape));
    int64_t numel = nu_prod(shape, rank);
    double *xd = nu_load_f64(ex, x);                               /* (planes, H, W) */
    double *yd = (double *)nu_scratch(ex, numel, sizeof(double)); /* (planes, OH, OW) */
    if (!xd || !yd) return NU_NOMEM(ex);
    if (!is_max) {
        int64_t div = pk_is_none(ex, n, 6) ? 0 : pk_int(ex, n, 6);
        if (!pk_is_none(ex, n, 6) && div == 0)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "divisor_override must be non-zero");
        pool_avg(&g, xd, yd, pk_bool(ex, n, 5), div);
        return pool_emit(ex, n, 0, rank, shape, yd);
    }
    bool with_ind = n->op == PETREL_OP_MAX_POOL2D_WITH_INDICES;
    int64_t *ind = with_ind ? (int64_t *)nu_scratch(ex, numel, sizeof(int64_t)) : NULL;
    if (with_ind && !ind) return NU_NOMEM(ex);
    pool_max(&g, xd, yd, ind);
    PT_TRY(pool_emit(ex, n, 0, rank, shape, yd));
    if (with_ind && nu_out_used(n, 1)) {
        pt_tensor *oi;
        PT_TRY(pk_out_alloc_dtype(ex, n, 1, PETREL_DTYPE_I64, rank, shape, &oi));
        memcpy(oi->data, ind, (size_t)numel * sizeof(int64_t));
    }
    return PETREL_OK;
}

/*
** Kernel family "pool": max_pool2d, max_pool2d_with_indices (values and
** int64 flat indices), avg_pool2d, adaptive_avg_pool2d (both spellings),
** adaptive_avg_pool1d, max_pool1d and (once ops.def lists it) avg_pool1d.
*/
petrel_status cpu_k_pool(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_SHAPE, "pooling input is None");
    int64_t shape[PETREL_MAX_RANK];
    int rank = 0;
    switch (n->op) {
    case PETREL_OP_MAX_POOL2D:
    case PETREL_OP_MAX_POOL2D_WITH_INDICES:
    case PETREL_OP_AVG_POOL2D:
        return pool_window(ex, n, x, 2, n->op != PETREL_OP_AVG_POOL2D);
    case PETREL_OP_ADAPTIVE_AVG_POOL2D:
    case PETREL_OP_ADAPTIVE_AVG_POOL2D_:
    case PETREL_OP_ADAPTIVE_AVG_POOL1D: {
        int S = n->op == PETREL_OP_ADAPTIVE_AVG_POOL1D ? 1 : 2;
        int64_t os[2];
        if (!nu_ints_n(ex, n, 1, S, os))
            return pk_fail(ex, PETREL_ERR_SHAPE, "output_size must have %d values", S);
        if (x->rank != S + 1 && x->rank != S + 2)
            return pk_fail(ex, PETREL_ERR_SHAPE, "adaptive pooling input of rank %d", x->rank);
        int r = x->rank;
        int64_t H = S == 2 ? x->shape[r - 2] : 1, W = x->shape[r - 1];
        int64_t OH = S == 2 ? os[0] : 1, OW = os[S - 1];
        if (OH < 0 || OW < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "negative output_size");
        for (int i = 0; i < r - S; i++) {
            if (x->shape[i] == 0 && i > 0)
                return pk_fail(ex, PETREL_ERR_SHAPE, "adaptive pooling over an empty dim");
            shape[i] = x->shape[i];
        }
        if ((H == 0 || W == 0) && OH * OW > 0)
            return pk_fail(ex, PETREL_ERR_SHAPE, "adaptive pooling over an empty dim");
        if (S == 2) shape[r - 2] = OH;
        shape[r - 1] = OW;
        rank = r;
        int64_t planes = nu_prod(x->shape, r - S);
        double *xd = nu_load_f64(ex, x);
        double *yd = (double *)nu_scratch(ex, planes * OH * OW, sizeof(double));
        if (!xd || !yd) return NU_NOMEM(ex);
        pool_adaptive_avg(planes, H, W, OH, OW, xd, yd);
        return pool_emit(ex, n, 0, rank, shape, yd);
    }
    case PETREL_OP_MAX_POOL1D:
        return pool_window(ex, n, x, 1, true);
    default: {
        /* avg_pool1d is matched by target so it works as soon as ops.def
         * lists it under this family */
        const char *target = pt_op_table[n->op].target;
        if (strcmp(target, "aten.avg_pool1d.default") == 0) return pool_window(ex, n, x, 1, false);
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "%s is not a pooling op", target);
    }
    }
}
