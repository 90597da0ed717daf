/*
** conv.c -- CPU reference kernels for N-d convolution (1-d, 2-d and 3-d),
** plain and transposed, with stride, padding (numbers or "valid"/"same"),
** dilation, groups and output_padding: aten.convolution plus the conv1d /
** conv2d / conv_transpose1d / conv_transpose2d entry points.  Part of the
** CPU backend.
**
** Both directions precompute, once per call, a table mapping (position,
** kernel tap) to a flat offset on the other side (or -1 when the tap falls
** into padding), so the channel loops are plain dot products in double.
*/
#include "nn_util.h"

#define CONV_MAX_SPATIAL 3

/* Geometry of one convolution call. */
typedef struct conv_geom {
    int S;                                  /* spatial dims */
    bool transposed;
    int64_t N, Cin, Cout, groups;
    int64_t in[CONV_MAX_SPATIAL], k[CONV_MAX_SPATIAL], out[CONV_MAX_SPATIAL];
    int64_t stride[CONV_MAX_SPATIAL], dil[CONV_MAX_SPATIAL];
    int64_t pad[CONV_MAX_SPATIAL];    /* leading padding (both sides unless pad_hi differs) */
    int64_t pad_hi[CONV_MAX_SPATIAL]; /* trailing padding of a plain convolution */
    int64_t outpad[CONV_MAX_SPATIAL];
} conv_geom;

/* Fill tab[(p, kp)] for every position p of the `from` grid and every
 * kernel tap kp: the flat offset in the `to` grid that the tap touches, or
 * -1 when it lands outside.  For a plain convolution `from` is the output
 * (to = input, coordinate o*s - pad + k*d); for a transposed one `from` is
 * the input (to = output, same formula read the other way). */
static void conv_table(const conv_geom *g, const int64_t *from, const int64_t *to, int64_t *tab) {
    int S = g->S;
    int64_t nfrom = nu_prod(from, S), nk = nu_prod(g->k, S);
    int64_t p[CONV_MAX_SPATIAL] = {0};
    for (int64_t pi = 0; pi < nfrom; pi++) {
        int64_t kp[CONV_MAX_SPATIAL] = {0};
        for (int64_t ki = 0; ki < nk; ki++) {
            int64_t off = 0;
            for (int d = 0; d < S; d++) {
                int64_t c = p[d] * g->stride[d] - g->pad[d] + kp[d] * g->dil[d];
                if (c < 0 || c >= to[d]) {
                    off = -1;
                    break;
                }
                off = off * to[d] + c;
            }
            tab[pi * nk + ki] = off;
            pt_next_index(kp, g->k, S);
        }
        pt_next_index(p, from, S);
    }
}

/* y (N, Cout, out...) = conv(x (N, Cin, in...), w (Cout, Cin/groups, k...)) + bias */
static void conv_forward(const conv_geom *g, const double *x, const double *w, const double *bias,
                         const int64_t *tab, double *y) {
    int64_t isp = nu_prod(g->in, g->S), osp = nu_prod(g->out, g->S), nk = nu_prod(g->k, g->S);
    int64_t cig = g->Cin / g->groups, cog = g->Cout / g->groups;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t oc = 0; oc < g->Cout; oc++) {
            int64_t grp = oc / cog;
            double *yo = y + (n * g->Cout + oc) * osp;
            for (int64_t o = 0; o < osp; o++) {
                double acc = bias ? bias[oc] : 0.0;
                const int64_t *t = tab + o * nk;
                for (int64_t icg = 0; icg < cig; icg++) {
                    const double *xi = x + (n * g->Cin + grp * cig + icg) * isp;
                    const double *wk = w + (oc * cig + icg) * nk;
                    for (int64_t kp = 0; kp < nk; kp++)
                        if (t[kp] >= 0) acc += xi[t[kp]] * wk[kp];
                }
                yo[o] = acc;
            }
        }
}

/* y (N, Cout, out...) = conv_transpose(x (N, Cin, in...), w (Cin, Cout/groups, k...)) + bias:
 * every input element scatters its kernel-weighted contribution. */
static void conv_backward_data(const conv_geom *g, const double *x, const double *w,
                               const double *bias, const int64_t *tab, double *y) {
    int64_t isp = nu_prod(g->in, g->S), osp = nu_prod(g->out, g->S), nk = nu_prod(g->k, g->S);
    int64_t cig = g->Cin / g->groups, cog = g->Cout / g->groups;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t oc = 0; oc < g->Cout; oc++)
            for (int64_t o = 0; o < osp; o++)
                y[(n * g->Cout + oc) * osp + o] = bias ? bias[oc] : 0.0;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t ic = 0; ic < g->Cin; ic++) {
            int64_t grp = ic / cig;
            const double *xi = x + (n * g->Cin + ic) * isp;
            for (int64_t ocg = 0; ocg < cog; ocg++) {
                double *yo = y + (n * g->Cout + grp * cog + ocg) * osp;
                const double *wk = w + (ic * cog + ocg) * nk;
                for (int64_t i = 0; i < isp; i++) {
                    const int64_t *t = tab + i * nk;
                    for (int64_t kp = 0; kp < nk; kp++)
                        if (t[kp] >= 0) yo[t[kp]] += xi[i] * wk[kp];
                }
            }
        }
}

/* How an op spells its arguments. */
typedef enum conv_form {
    CONV_GENERIC,    /* convolution: (in, w, b, stride, padding, dilation, transposed,
                      *               output_padding, groups) */
    CONV_PLAIN,      /* convNd: (in, w, b, stride, padding, dilation, groups) */
    CONV_PAD_STR,    /* convNd.padding: the same with padding "valid" / "same" */
    CONV_TRANSPOSED, /* conv_transposeNd: (in, w, b, stride, padding, output_padding,
                      *                    groups, dilation) */
} conv_form;

/* Form and expected spatial rank (0 = any) of a convolution op.  Ops that
 * ops.def may list later are matched by target, so they run as soon as
 * they are added to this family.  Returns false for a foreign op. */
static bool conv_decode(pt_op op, conv_form *form, int *want) {
    switch (op) {
    case PETREL_OP_CONVOLUTION: *form = CONV_GENERIC, *want = 0; return true;
    case PETREL_OP_CONV1D: *form = CONV_PLAIN, *want = 1; return true;
    case PETREL_OP_CONV2D: *form = CONV_PLAIN, *want = 2; return true;
    case PETREL_OP_CONV_TRANSPOSE1D: *form = CONV_TRANSPOSED, *want = 1; return true;
    case PETREL_OP_CONV_TRANSPOSE2D: *form = CONV_TRANSPOSED, *want = 2; return true;
    case PETREL_OP_CONV1D_PADDING: *form = CONV_PAD_STR, *want = 1; return true;
    case PETREL_OP_CONV2D_PADDING: *form = CONV_PAD_STR, *want = 2; return true;
    default: break;
    }
    static const struct { const char *target; conv_form form; int want; } later[] = {
        {"aten.conv3d.default", CONV_PLAIN, 3},
        {"aten.conv3d.padding", CONV_PAD_STR, 3},
        {"aten.conv_transpose3d.input", CONV_TRANSPOSED, 3},
    };
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
        if (strcmp(pt_op_table[op].target, later[i].target) == 0) {
            *form = later[i].form, *want = later[i].want;
            return true;
        }
    return false;
}

/* Read stride / padding / dilation / output_padding / groups into g by the
 * op's form.  String padding resolves against the kernel extent: "valid"
 * is none, "same" pads d*(k-1) in total with the odd element at the end
 * (torch requires stride 1 for it). */
static petrel_status conv_read_args(pt_exec *ex, const pt_node *n, conv_form form,
                                    const pt_tensor *w, conv_geom *g) {
    int S = g->S;
    int a_pad = 4, a_dil = 5, a_outpad = -1, a_groups = 6;
    if (form == CONV_GENERIC) {
        g->transposed = pk_bool(ex, n, 6);
        a_outpad = g->transposed ? 7 : -1;
        a_groups = 8;
    } else if (form == CONV_TRANSPOSED) {
        g->transposed = true;
        a_outpad = 5, a_groups = 6, a_dil = 7;
    }
    if (!nu_ints_n(ex, n, 3, S, g->stride) || !nu_ints_n(ex, n, a_dil, S, g->dil))
        return pk_fail(ex, PETREL_ERR_SHAPE, "stride/dilation must have 1 or %d values", S);
    if (form == CONV_PAD_STR) {
        const char *mode = pk_str(ex, n, a_pad);
        bool same = mode && strcmp(mode, "same") == 0;
        if (!same && !(mode && strcmp(mode, "valid") == 0))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "convolution padding '%s' is not supported",
                           mode ? mode : "(none)");
        for (int d = 0; d < S; d++) {
            int64_t total = same ? g->dil[d] * (w->shape[2 + d] - 1) : 0;
            if (same && g->stride[d] != 1)
                return pk_fail(ex, PETREL_ERR_RUNTIME, "padding='same' needs stride 1");
            g->pad[d] = total / 2;
            g->pad_hi[d] = total - total / 2;
        }
    } else {
        if (!nu_ints_n(ex, n, a_pad, S, g->pad))
            return pk_fail(ex, PETREL_ERR_SHAPE, "padding must have 1 or %d values", S);
        for (int d = 0; d < S; d++) g->pad_hi[d] = g->pad[d];
    }
    for (int d = 0; d < S; d++) g->outpad[d] = 0;
    if (a_outpad >= 0 && !nu_ints_n(ex, n, a_outpad, S, g->outpad))
        return pk_fail(ex, PETREL_ERR_SHAPE, "output_padding must have 1 or %d values", S);
    for (int d = 0; d < S; d++)
        if (g->stride[d] < 1 || g->dil[d] < 1 || g->pad[d] < 0 || g->outpad[d] < 0)
            return pk_fail(ex, PETREL_ERR_SHAPE, "invalid stride/padding/dilation");
    g->groups = pk_int(ex, n, a_groups);
    return PETREL_OK;
}

/*
** Kernel family "conv": convolution.default and the conv1d / conv2d
** (integer or "valid"/"same" padding) / conv_transpose1d / conv_transpose2d
** overloads, plus the 3-d spellings once ops.def lists them.  Unbatched
** input (rank = spatial dims + 1) is treated as a batch of one, as torch
** does.
*/
petrel_status cpu_k_conv(pt_exec *ex, const pt_node *n) {
    conv_geom g;
    memset(&g, 0, sizeof g);
    conv_form form;
    int want;
    if (!conv_decode(n->op, &form, &want))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "%s is not a convolution",
                       pt_op_table[n->op].target);
    const pt_tensor *x = pk_tensor(ex, n, 0), *w = pk_tensor(ex, n, 1), *bias = pk_tensor(ex, n, 2);
    if (!x || !w) return pk_fail(ex, PETREL_ERR_SHAPE, "convolution input or weight is None");
    g.S = w->rank - 2;
    if (g.S < 1 || g.S > CONV_MAX_SPATIAL || (want && g.S != want))
        return pk_fail(ex, PETREL_ERR_SHAPE, "convolution weight of rank %d not supported here",
                       w->rank);
    PT_TRY(conv_read_args(ex, n, form, w, &g));
    bool batched = x->rank == g.S + 2;
    if (!batched && x->rank != g.S + 1)
        return pk_fail(ex, PETREL_ERR_SHAPE, "convolution input of rank %d for %d spatial dims",
                       x->rank, g.S);
    int sp0 = batched ? 2 : 1; /* first spatial dim of x */
    g.N = batched ? x->shape[0] : 1;
    g.Cin = x->shape[sp0 - 1];
    if (g.groups < 1) return pk_fail(ex, PETREL_ERR_SHAPE, "groups must be positive");
    if (!g.transposed) {
        g.Cout = w->shape[0];
        if (w->shape[1] * g.groups != g.Cin || g.Cout % g.groups != 0)
            return pk_fail(ex, PETREL_ERR_SHAPE,
                           "weight (%lld, %lld, ...) with groups=%lld does not fit %lld input "
                           "channels",
                           (long long)w->shape[0], (long long)w->shape[1], (long long)g.groups,
                           (long long)g.Cin);
    } else {
        g.Cout = w->shape[1] * g.groups;
        if (w->shape[0] != g.Cin || g.Cin % g.groups != 0)
            return pk_fail(ex, PETREL_ERR_SHAPE,
                           "transposed weight (%lld, %lld, ...) with groups=%lld does not fit "
                           "%lld input channels",
                           (long long)w->shape[0], (long long)w->shape[1], (long long)g.groups,
                           (long long)g.Cin);
    }
    if (bias && (bias->rank != 1 || bias->shape[0] != g.Cout))
        return pk_fail(ex, PETREL_ERR_SHAPE, "bias must have %lld elements", (long long)g.Cout);
    for (int d = 0; d < g.S; d++) {
        g.in[d] = x->shape[sp0 + d];
        g.k[d] = w->shape[2 + d];
        int64_t span = g.in[d] + g.pad[d] + g.pad_hi[d] - g.dil[d] * (g.k[d] - 1) - 1;
        if (!g.transposed) {
            if (span < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "kernel larger than padded input");
            g.out[d] = span / g.stride[d] + 1;
        } else {
            g.out[d] = (g.in[d] - 1) * g.stride[d] - 2 * g.pad[d] + g.dil[d] * (g.k[d] - 1) +
                       g.outpad[d] + 1;
        }
        if (g.out[d] < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "convolution output size < 0");
    }

    int64_t shape[PETREL_MAX_RANK];
    int rank = 0;
    if (batched) shape[rank++] = g.N;
    shape[rank++] = g.Cout;
    for (int d = 0; d < g.S; d++) shape[rank++] = g.out[d];
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    int64_t numel = pt_numel(out);
    if (numel == 0) return PETREL_OK;

    double *xd = nu_load_f64(ex, x); /* (N, Cin, in...) -- unbatched has the same layout */
    double *wd = nu_load_f64(ex, w);
    double *bd = bias ? nu_load_f64(ex, bias) : NULL;
    double *yd = (double *)nu_scratch(ex, numel, sizeof(double));
    int64_t nk = nu_prod(g.k, g.S);
    const int64_t *from = g.transposed ? g.in : g.out, *to = g.transposed ? g.out : g.in;
    int64_t *tab = (int64_t *)nu_scratch(ex, nu_prod(from, g.S) * nk, sizeof(int64_t));
    if (!xd || !wd || (bias && !bd) || !yd || !tab) return NU_NOMEM(ex);
    conv_table(&g, from, to, tab);
    if (!g.transposed)
        conv_forward(&g, xd, wd, bd, tab, yd);
    else
        conv_backward_data(&g, xd, wd, bd, tab, yd);
    nu_store_f64(out, yd);
    return PETREL_OK;
}
