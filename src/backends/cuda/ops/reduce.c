/*
** reduce.c -- the CUDA "reduce" family: sum, mean, prod, amax/amin,
** max/min (whole tensor or along a dim with indices), argmax/argmin,
** any/all, var/std/var_mean, logsumexp, linalg_vector_norm, cumsum and
** (log_)softmax.  Host side: the argument checks and output shapes of
** backends/cpu/ops/reduce.c, then one launch (reduce_k.cu).  histc stays
** on the CPU.
**
** The input's dims split into kept dims (one output element per
** position) and reduced dims, as on the CPU; each list is then coalesced
** (size-1 dims dropped, dims that are contiguous with their neighbour
** merged) so a kernel usually sees one reduced dim and few kept ones.
** The shape of the work picks how many threads share a row.
*/
#include <math.h>
#include <string.h>

#include "reduce_k.h"

/* ---- plans ---------------------------------------------------------------- */

/* A list of dims walked row-major: (n, shape, stride), plus optionally a
 * second stride set walked in step (the output of softmax / cumsum). */
typedef struct rd_dims {
    int n;
    int64_t shape[PETREL_MAX_RANK], stride[PETREL_MAX_RANK], stride2[PETREL_MAX_RANK];
} rd_dims;

static void rd_push(rd_dims *l, int64_t shape, int64_t stride, int64_t stride2) {
    l->shape[l->n] = shape;
    l->stride[l->n] = stride;
    l->stride2[l->n++] = stride2;
}

/* Drop size-1 dims and merge a dim into its predecessor when both stride
 * sets step over it contiguously; the row-major order of positions (and
 * so every index a kernel reports) is unchanged. */
static void rd_coalesce(rd_dims *l) {
    rd_dims c = {0};
    for (int i = 0; i < l->n; i++) {
        if (l->shape[i] == 1) continue;
        int k = c.n - 1;
        if (k >= 0 && c.stride[k] == l->stride[i] * l->shape[i] &&
            c.stride2[k] == l->stride2[i] * l->shape[i]) {
            c.shape[k] *= l->shape[i];
            c.stride[k] = l->stride[i];
            c.stride2[k] = l->stride2[i];
            continue;
        }
        rd_push(&c, l->shape[i], l->stride[i], l->stride2[i]);
    }
    *l = c;
}

/* How the input splits for one reduction (mask[d]: dim d is reduced). */
typedef struct rd_plan {
    rd_dims kept, red;
    int64_t outer, count;
    int out_rank;
    int64_t out_shape[PETREL_MAX_RANK];
} rd_plan;

static void rd_make(rd_plan *p, const pt_tensor *t, const bool *mask, bool keepdim) {
    memset(p, 0, sizeof *p);
    p->outer = p->count = 1;
    for (int d = 0; d < t->rank; d++) {
        if (mask[d]) {
            rd_push(&p->red, t->shape[d], t->stride[d], 0);
            p->count *= t->shape[d];
            if (keepdim) p->out_shape[p->out_rank++] = 1;
        } else {
            rd_push(&p->kept, t->shape[d], t->stride[d], 0);
            p->outer *= t->shape[d];
            p->out_shape[p->out_rank++] = t->shape[d];
        }
    }
    rd_coalesce(&p->kept);
    rd_coalesce(&p->red);
}

/* Threads per row and block size for `outer` rows of `count` elements:
 * a thread per row when rows are short, or strided and plentiful (then
 * neighbouring threads read neighbouring rows); a warp per row up to a
 * few thousand elements; else the whole block, sized to the row. */
static void rd_threads(int64_t outer, int64_t count, bool dense_rows, int *tpr, int *threads) {
    if (count <= 16 || (!dense_rows && outer >= 16384)) {
        *tpr = 1, *threads = 256;
    } else if (count <= 2048 && !(outer < 256 && count > 256)) {
        *tpr = 32, *threads = 256;
    } else {
        *threads = count >= 65536 ? 1024 : count >= 16384 ? 512 : 256;
        *tpr = *threads;
    }
}

/* How elements are loaded and accumulated (reduce_k.h). */
static int rd_loader(petrel_dtype in, bool int_math, bool f64_out) {
    if (int_math) return PCU_LD_I64;
    if (f64_out) return PCU_LD_F64;
    switch (in) {
    case PETREL_DTYPE_F32: return PCU_LD_F32;
    case PETREL_DTYPE_F16: return PCU_LD_F16;
    case PETREL_DTYPE_BF16: return PCU_LD_BF16;
    default: return PCU_LD_F64;
    }
}

/* The launch block of plan p over x (the caller sets op and outputs). */
static void rd_red_init(pcu_red *a, const rd_plan *p, const pt_tensor *x) {
    memset(a, 0, sizeof *a);
    a->in = x->data;
    a->idt = (int32_t)x->dtype;
    a->nk = p->kept.n;
    a->nr = p->red.n;
    for (int i = 0; i < p->kept.n; i++)
        a->kshape[i] = p->kept.shape[i], a->kstride[i] = p->kept.stride[i];
    for (int i = 0; i < p->red.n; i++)
        a->rshape[i] = p->red.shape[i], a->rstride[i] = p->red.stride[i];
    a->outer = p->outer;
    a->count = p->count;
}

static petrel_status rd_red_run(pt_exec *ex, pcu_red *a) {
    if (a->outer == 0) return PETREL_OK;
    int threads;
    rd_threads(a->outer, a->count, a->nr == 1 && a->rstride[0] == 1, &a->tpr, &threads);
    PCU_LAUNCHED(ex, pcu_red_launch(a, threads, pcu_stream(ex)), "reduction kernel");
    return PETREL_OK;
}

static bool rd_is_f64(const pt_tensor *t) { return t && t->dtype == PETREL_DTYPE_F64; }

/* ---- dims ----------------------------------------------------------------- */

/* Mark dim d (possibly negative) as reduced.  A rank-0 tensor accepts 0
 * and -1 and has nothing to mark. */
static petrel_status rd_mark(pt_exec *ex, int64_t d, int rank, bool *mask) {
    int w = pt_wrap_dim(d, rank);
    if (w < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "dim %lld out of range", (long long)d);
    if (rank == 0) return PETREL_OK;
    if (mask[w])
        return pk_fail(ex, PETREL_ERR_RUNTIME, "dim %lld appears multiple times in the list of dims",
                       (long long)d);
    mask[w] = true;
    return PETREL_OK;
}

/* Fill mask from a dim-list argument; None or [] reduces every dim. */
static petrel_status rd_dims_arg(pt_exec *ex, const pt_node *n, int a, int rank, bool *mask) {
    memset(mask, 0, sizeof(bool) * PETREL_MAX_RANK);
    int64_t dims[PETREL_MAX_RANK * 2];
    int nd = pk_is_none(ex, n, a) ? 0 : pk_ints(ex, n, a, dims, PETREL_MAX_RANK * 2);
    if (nd == 0) {
        for (int d = 0; d < rank; d++) mask[d] = true;
        return PETREL_OK;
    }
    for (int i = 0; i < nd; i++) PT_TRY(rd_mark(ex, dims[i], rank, mask));
    return PETREL_OK;
}

/* Fill mask from a single int dim argument. */
static petrel_status rd_dim_arg(pt_exec *ex, const pt_node *n, int a, int rank, bool *mask) {
    memset(mask, 0, sizeof(bool) * PETREL_MAX_RANK);
    return rd_mark(ex, pk_int(ex, n, a), rank, mask);
}

static void rd_all(int rank, bool *mask) {
    for (int d = 0; d < PETREL_MAX_RANK; d++) mask[d] = d < rank;
}

/* ---- one value per output position --------------------------------------- */

typedef enum rd_kind {
    RD_SUM, RD_MEAN, RD_PROD, RD_AMAX, RD_AMIN, RD_ANY, RD_ALL, RD_LOGSUMEXP, RD_NORM,
} rd_kind;

/* Reduce x over mask into output 0.  Integer sums, products and extremes
 * stay in int64 when the output is an integer dtype. */
static petrel_status rd_simple(pt_exec *ex, const pt_node *n, const pt_tensor *x, rd_kind k,
                               const bool *mask, bool keepdim, double ord) {
    rd_plan p;
    rd_make(&p, x, mask, keepdim);
    if ((k == RD_AMAX || k == RD_AMIN || (k == RD_NORM && (ord < 0 || isinf(ord)))) &&
        p.count == 0 && p.outer > 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME,
                       "cannot reduce over a zero-size dimension (the op has no identity)");
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, p.out_rank, p.out_shape, &out));
    static const int ops[] = {
        [RD_SUM] = PCU_RED_SUM, [RD_MEAN] = PCU_RED_SUM,    [RD_PROD] = PCU_RED_PROD,
        [RD_AMAX] = PCU_RED_EXT, [RD_AMIN] = PCU_RED_EXT,   [RD_ANY] = PCU_RED_ANYALL,
        [RD_ALL] = PCU_RED_ANYALL, [RD_LOGSUMEXP] = PCU_RED_LSE, [RD_NORM] = PCU_RED_NORM,
    };
    bool int_math = !pt_dtype_is_float(out->dtype) &&
                    (k == RD_SUM || k == RD_PROD || k == RD_AMAX || k == RD_AMIN);
    pcu_red a;
    rd_red_init(&a, &p, x);
    a.ld = rd_loader(x->dtype, int_math, rd_is_f64(out));
    a.op = ops[k];
    a.flag = k == RD_AMAX || k == RD_ANY;
    a.mean = k == RD_MEAN;
    a.p = ord;
    a.out = out->data;
    a.odt = (int32_t)out->dtype;
    return rd_red_run(ex, &a);
}

/* max.dim / min.dim (values and indices) and argmax / argmin (indices
 * only): the first position of the extreme along the reduced dims walked
 * row-major; NaN counts as the extreme for both, as in torch. */
static petrel_status rd_extreme(pt_exec *ex, const pt_node *n, const pt_tensor *x,
                                const bool *mask, bool keepdim, bool want_max, bool with_values) {
    rd_plan p;
    rd_make(&p, x, mask, keepdim);
    if (p.count == 0 && p.outer > 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME,
                       "cannot reduce over a zero-size dimension (the op has no identity)");
    pt_tensor *vals = NULL, *inds = NULL;
    int ki = with_values ? 1 : 0; /* output holding the indices */
    if (with_values && n->outs[0] >= 0)
        PT_TRY(pk_out_alloc(ex, n, 0, p.out_rank, p.out_shape, &vals));
    if (ki < n->nout && n->outs[ki] >= 0)
        PT_TRY(pk_out_alloc_dtype(ex, n, ki, PETREL_DTYPE_I64, p.out_rank, p.out_shape, &inds));
    if (!vals && !inds) return PETREL_OK;
    pcu_red a;
    rd_red_init(&a, &p, x);
    a.ld = rd_loader(x->dtype, !pt_dtype_is_float(x->dtype), rd_is_f64(vals));
    a.op = PCU_RED_ARG;
    a.flag = want_max;
    if (vals) a.out = vals->data, a.odt = (int32_t)vals->dtype;
    if (inds) a.out2 = inds->data, a.odt2 = (int32_t)inds->dtype;
    return rd_red_run(ex, &a);
}

/* var / std (output 0) and var_mean (outputs var, mean), two-pass.  The
 * divisor is max(N - correction, 0), so a single element with correction
 * 1 gives NaN like torch. */
static petrel_status rd_var(pt_exec *ex, const pt_node *n, const pt_tensor *x, const bool *mask,
                            bool keepdim, double correction, bool take_sqrt, bool with_mean) {
    rd_plan p;
    rd_make(&p, x, mask, keepdim);
    pt_tensor *var, *mean = NULL;
    PT_TRY(pk_out_alloc(ex, n, 0, p.out_rank, p.out_shape, &var));
    if (with_mean && n->nout > 1 && n->outs[1] >= 0)
        PT_TRY(pk_out_alloc(ex, n, 1, p.out_rank, p.out_shape, &mean));
    pcu_red a;
    rd_red_init(&a, &p, x);
    a.ld = rd_loader(x->dtype, false, rd_is_f64(var) || rd_is_f64(mean));
    a.op = PCU_RED_VAR;
    a.p = correction;
    a.take_sqrt = take_sqrt;
    a.out = var->data;
    a.odt = (int32_t)var->dtype;
    if (mean) a.out2 = mean->data, a.odt2 = (int32_t)mean->dtype;
    return rd_red_run(ex, &a);
}

/* ---- dim-wise ops (output has the input's shape) -------------------------- */

static petrel_status rd_along(pt_exec *ex, const pt_node *n, const pt_tensor *x, int64_t dim,
                              int op) {
    bool mask[PETREL_MAX_RANK] = {0};
    PT_TRY(rd_mark(ex, dim, x->rank, mask));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    pcu_along a;
    memset(&a, 0, sizeof a);
    rd_dims kept = {0};
    a.count = 1;
    a.outer = 1;
    for (int d = 0; d < x->rank; d++) {
        if (mask[d]) {
            a.count = x->shape[d];
            a.rstride = x->stride[d];
            a.orstride = out->stride[d];
        } else {
            rd_push(&kept, x->shape[d], x->stride[d], out->stride[d]);
            a.outer *= x->shape[d];
        }
    }
    if (a.outer == 0 || a.count == 0) return PETREL_OK;
    rd_coalesce(&kept);
    a.nk = kept.n;
    for (int i = 0; i < kept.n; i++) {
        a.kshape[i] = kept.shape[i];
        a.kstride[i] = kept.stride[i];
        a.okstride[i] = kept.stride2[i];
    }
    a.in = x->data;
    a.idt = (int32_t)x->dtype;
    a.out = out->data;
    a.odt = (int32_t)out->dtype;
    a.op = op;
    bool int_math = op == PCU_ALONG_CUMSUM && !pt_dtype_is_float(out->dtype);
    a.ld = rd_loader(x->dtype, int_math, rd_is_f64(out));
    int threads;
    if (op != PCU_ALONG_CUMSUM) {
        rd_threads(a.outer, a.count, a.rstride == 1, &a.tpr, &threads);
    } else if (a.count <= 256 || a.outer >= 4096) {
        a.tpr = 1, threads = 256; /* a sequential scan per thread */
    } else {
        threads = a.count >= 16384 ? 1024 : 256; /* a block scans the row in tiles */
        a.tpr = threads;
    }
    PCU_LAUNCHED(ex, pcu_along_launch(&a, threads, pcu_stream(ex)), "softmax/cumsum kernel");
    return PETREL_OK;
}

/* ---- kernel --------------------------------------------------------------- */

/*
** cuda_k_reduce -- the "reduce" family on CUDA (every op but histc).
** Reads the input (argument 0) and the dims / keepdim / correction / ord
** arguments by schema position; the dtype= arguments only change the
** output dtype, which the exported meta already has.  Fails on a dim out
** of range or repeated, and on an empty reduction for ops without an
** identity, as the CPU backend does.
*/
petrel_status cuda_k_reduce(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
    if (pcu_is_host_scalar(x))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "a Python number where a device tensor is needed");
    bool mask[PETREL_MAX_RANK];
    int r = x->rank;
    switch (n->op) {
    case PETREL_OP_SUM: rd_all(r, mask); return rd_simple(ex, n, x, RD_SUM, mask, false, 0);
    case PETREL_OP_MEAN: rd_all(r, mask); return rd_simple(ex, n, x, RD_MEAN, mask, false, 0);
    case PETREL_OP_PROD: rd_all(r, mask); return rd_simple(ex, n, x, RD_PROD, mask, false, 0);
    case PETREL_OP_MAX: rd_all(r, mask); return rd_simple(ex, n, x, RD_AMAX, mask, false, 0);
    case PETREL_OP_MIN: rd_all(r, mask); return rd_simple(ex, n, x, RD_AMIN, mask, false, 0);
    case PETREL_OP_ANY: rd_all(r, mask); return rd_simple(ex, n, x, RD_ANY, mask, false, 0);
    case PETREL_OP_ALL: rd_all(r, mask); return rd_simple(ex, n, x, RD_ALL, mask, false, 0);
    case PETREL_OP_SUM_DIM:
    case PETREL_OP_MEAN_DIM:
    case PETREL_OP_AMAX:
    case PETREL_OP_AMIN:
    case PETREL_OP_ANY_DIMS:
    case PETREL_OP_ALL_DIMS: {
        rd_kind k = n->op == PETREL_OP_SUM_DIM    ? RD_SUM
                    : n->op == PETREL_OP_MEAN_DIM ? RD_MEAN
                    : n->op == PETREL_OP_AMAX     ? RD_AMAX
                    : n->op == PETREL_OP_AMIN     ? RD_AMIN
                    : n->op == PETREL_OP_ANY_DIMS ? RD_ANY
                                                  : RD_ALL;
        PT_TRY(rd_dims_arg(ex, n, 1, r, mask));
        return rd_simple(ex, n, x, k, mask, pk_bool(ex, n, 2), 0);
    }
    case PETREL_OP_PROD_DIM:
    case PETREL_OP_ANY_DIM:
    case PETREL_OP_ALL_DIM: {
        rd_kind k = n->op == PETREL_OP_PROD_DIM ? RD_PROD : n->op == PETREL_OP_ANY_DIM ? RD_ANY : RD_ALL;
        PT_TRY(rd_dim_arg(ex, n, 1, r, mask));
        return rd_simple(ex, n, x, k, mask, pk_bool(ex, n, 2), 0);
    }
    case PETREL_OP_LOGSUMEXP:
        PT_TRY(rd_dims_arg(ex, n, 1, r, mask));
        return rd_simple(ex, n, x, RD_LOGSUMEXP, mask, pk_bool(ex, n, 2), 0);
    case PETREL_OP_VECTOR_NORM:
        PT_TRY(rd_dims_arg(ex, n, 2, r, mask));
        return rd_simple(ex, n, x, RD_NORM, mask, pk_bool(ex, n, 3), pk_float(ex, n, 1));
    case PETREL_OP_MAX_DIM:
    case PETREL_OP_MIN_DIM:
        PT_TRY(rd_dim_arg(ex, n, 1, r, mask));
        return rd_extreme(ex, n, x, mask, pk_bool(ex, n, 2), n->op == PETREL_OP_MAX_DIM, true);
    case PETREL_OP_ARGMAX:
    case PETREL_OP_ARGMIN:
        if (pk_is_none(ex, n, 1)) rd_all(r, mask);
        else PT_TRY(rd_dim_arg(ex, n, 1, r, mask));
        return rd_extreme(ex, n, x, mask, pk_bool(ex, n, 2), n->op == PETREL_OP_ARGMAX, false);
    case PETREL_OP_VAR_CORRECTION:
    case PETREL_OP_STD_CORRECTION:
    case PETREL_OP_VAR_MEAN_CORRECTION: {
        PT_TRY(rd_dims_arg(ex, n, 1, r, mask));
        double corr = pk_is_none(ex, n, 2) ? 1.0 : pk_float(ex, n, 2);
        return rd_var(ex, n, x, mask, pk_bool(ex, n, 3), corr, n->op == PETREL_OP_STD_CORRECTION,
                      n->op == PETREL_OP_VAR_MEAN_CORRECTION);
    }
    case PETREL_OP_VAR_DIM:
    case PETREL_OP_STD_DIM:
    case PETREL_OP_VAR_MEAN_DIM:
        PT_TRY(rd_dims_arg(ex, n, 1, r, mask));
        return rd_var(ex, n, x, mask, pk_bool(ex, n, 3), pk_bool(ex, n, 2) ? 1.0 : 0.0,
                      n->op == PETREL_OP_STD_DIM, n->op == PETREL_OP_VAR_MEAN_DIM);
    case PETREL_OP_CUMSUM:
        return rd_along(ex, n, x, pk_int(ex, n, 1), PCU_ALONG_CUMSUM);
    case PETREL_OP_SOFTMAX_:
    case PETREL_OP_SOFTMAX_INT:
        return rd_along(ex, n, x, pk_int(ex, n, 1), PCU_ALONG_SOFTMAX);
    case PETREL_OP_LOG_SOFTMAX_:
    case PETREL_OP_LOG_SOFTMAX_INT:
        return rd_along(ex, n, x, pk_int(ex, n, 1), PCU_ALONG_LOG_SOFTMAX);
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "%s has no CUDA kernel",
                       pt_op_table[n->op].target);
    }
}
