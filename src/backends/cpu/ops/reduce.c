/*
** reduce.c -- CPU reference kernels for reductions and dim-wise ops: sum,
** mean, prod, amax/amin, max/min (whole tensor or along a dim with
** indices), argmax/argmin, any/all, var/std/var_mean, logsumexp,
** linalg_vector_norm, histc, cumsum and (log_)softmax.  Part of the CPU
** backend.
**
** Every op works from one plan: the input's dims split into kept dims (one
** output element per position) and reduced dims (walked row-major for
** each).  The values of one output position are gathered into a scratch
** row of doubles (float math) or int64 (integer sums, products and
** extremes, which must stay exact), and each op is a plain loop over that
** row.  Float results are rounded once to the exported dtype.
*/
#include "ew_util.h"

/* How the input splits for one reduction.  Output positions enumerate the
 * kept dims row-major, which is also the order of a contiguous output
 * (keepdim only inserts size-1 dims). */
typedef struct rd_plan {
    const pt_tensor *t;
    int nk;                          /* kept dims */
    int64_t kshape[PETREL_MAX_RANK];
    int64_t kstride[PETREL_MAX_RANK];
    int nr;                          /* reduced dims */
    int64_t rshape[PETREL_MAX_RANK];
    int64_t rstride[PETREL_MAX_RANK];
    int64_t outer;                   /* number of output positions */
    int64_t count;                   /* elements reduced into each */
    int out_rank;
    int64_t out_shape[PETREL_MAX_RANK];
} rd_plan;

/* Split t by mask (mask[d]: dim d is reduced). */
static void rd_make(rd_plan *p, const pt_tensor *t, const bool *mask, bool keepdim) {
    memset(p, 0, sizeof *p);
    p->t = t;
    p->outer = 1;
    p->count = 1;
    for (int d = 0; d < t->rank; d++) {
        if (mask[d]) {
            p->rshape[p->nr] = t->shape[d];
            p->rstride[p->nr++] = t->stride[d];
            p->count *= t->shape[d];
            if (keepdim) p->out_shape[p->out_rank++] = 1;
        } else {
            p->kshape[p->nk] = t->shape[d];
            p->kstride[p->nk++] = t->stride[d];
            p->outer *= t->shape[d];
            p->out_shape[p->out_rank++] = t->shape[d];
        }
    }
}

/* Element offset of the first reduced element of output position o. */
static int64_t rd_base(const rd_plan *p, int64_t o) {
    int64_t off = 0;
    for (int d = p->nk - 1; d >= 0; d--) {
        off += (o % p->kshape[d]) * p->kstride[d];
        o /= p->kshape[d];
    }
    return off;
}

/* Pointer to the j-th reduced element (walked row-major) of the position
 * whose base offset is `base`; `ridx` is the running index (zeroed by the
 * caller before j == 0). */
static uint8_t *rd_next(const rd_plan *p, int64_t base, int64_t *ridx, int64_t j) {
    if (j > 0) pt_next_index(ridx, p->rshape, p->nr);
    int64_t off = base;
    for (int d = 0; d < p->nr; d++) off += ridx[d] * p->rstride[d];
    return p->t->data + off * (int64_t)pt_elsize(p->t);
}

/* The values of output position o: row (count) as doubles. */
static void rd_gather_f64(const rd_plan *p, int64_t o, double *row) {
    int64_t base = rd_base(p, o), ridx[PETREL_MAX_RANK] = {0};
    for (int64_t j = 0; j < p->count; j++)
        row[j] = pt_load_f64(rd_next(p, base, ridx, j), p->t->dtype);
}

/* The values of output position o: row (count) as int64. */
static void rd_gather_i64(const rd_plan *p, int64_t o, int64_t *row) {
    int64_t base = rd_base(p, o), ridx[PETREL_MAX_RANK] = {0};
    for (int64_t j = 0; j < p->count; j++)
        row[j] = pt_load_i64(rd_next(p, base, ridx, j), p->t->dtype);
}

/* Write row (count doubles) back along the reduced dims of position o of a
 * plan over an output tensor (softmax, cumsum). */
static void rd_scatter_f64(const rd_plan *p, int64_t o, const double *row) {
    int64_t base = rd_base(p, o), ridx[PETREL_MAX_RANK] = {0};
    for (int64_t j = 0; j < p->count; j++)
        pt_store_f64(rd_next(p, base, ridx, j), p->t->dtype, row[j]);
}

static void rd_scatter_i64(const rd_plan *p, int64_t o, const int64_t *row) {
    int64_t base = rd_base(p, o), ridx[PETREL_MAX_RANK] = {0};
    for (int64_t j = 0; j < p->count; j++)
        pt_store_i64(rd_next(p, base, ridx, j), p->t->dtype, row[j]);
}

/* Scratch row for `count` 8-byte values (never a zero-byte request). */
static void *rd_row(pt_exec *ex, int64_t count) {
    return pk_scratch(ex, (size_t)(count > 0 ? count : 1) * 8);
}

/* ---- dims ---------------------------------------------------------------- */

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

/* Largest / smallest of a float row; NaN wins, as torch's max/amax. */
static double rd_max_f64(const double *row, int64_t count, bool want_max) {
    double best = row[0];
    for (int64_t j = 1; j < count && !isnan(best); j++) {
        double v = row[j];
        if (isnan(v) || (want_max ? v > best : v < best)) best = v;
    }
    return best;
}

/* linalg_vector_norm of a row for order `ord`. */
static double rd_norm(const double *row, int64_t count, double ord) {
    double acc = 0;
    if (isinf(ord)) {
        if (count == 0) return 0;
        acc = fabs(row[0]);
        for (int64_t j = 1; j < count; j++) {
            double a = fabs(row[j]);
            if (isnan(a) || isnan(acc)) acc = NAN;
            else acc = ord > 0 ? fmax(acc, a) : fmin(acc, a);
        }
        return acc;
    }
    if (ord == 0) {
        for (int64_t j = 0; j < count; j++) acc += row[j] != 0;
        return acc;
    }
    if (ord == 1) {
        for (int64_t j = 0; j < count; j++) acc += fabs(row[j]);
        return acc;
    }
    if (ord == 2) {
        for (int64_t j = 0; j < count; j++) acc += row[j] * row[j];
        return sqrt(acc);
    }
    for (int64_t j = 0; j < count; j++) acc += pow(fabs(row[j]), ord);
    return pow(acc, 1.0 / ord);
}

static double rd_value_f64(rd_kind k, const double *row, int64_t count, double ord) {
    double acc;
    switch (k) {
    case RD_SUM:
    case RD_MEAN:
        acc = 0;
        for (int64_t j = 0; j < count; j++) acc += row[j];
        return k == RD_MEAN ? acc / (double)count : acc;
    case RD_PROD:
        acc = 1;
        for (int64_t j = 0; j < count; j++) acc *= row[j];
        return acc;
    case RD_AMAX: return rd_max_f64(row, count, true);
    case RD_AMIN: return rd_max_f64(row, count, false);
    case RD_ANY:
        for (int64_t j = 0; j < count; j++)
            if (row[j] != 0) return 1;
        return 0;
    case RD_ALL:
        for (int64_t j = 0; j < count; j++)
            if (row[j] == 0) return 0;
        return 1;
    case RD_LOGSUMEXP: {
        if (count == 0) return -INFINITY;
        double m = rd_max_f64(row, count, true);
        /* an infinite max would make x - m NaN; torch shifts by 0 then */
        if (isinf(m) || isnan(m)) m = 0;
        acc = 0;
        for (int64_t j = 0; j < count; j++) acc += exp(row[j] - m);
        return log(acc) + m;
    }
    case RD_NORM: return rd_norm(row, count, ord);
    }
    return NAN;
}

static int64_t rd_value_i64(rd_kind k, const int64_t *row, int64_t count) {
    int64_t acc;
    switch (k) {
    case RD_SUM:
        acc = 0;
        for (int64_t j = 0; j < count; j++) acc = (int64_t)((uint64_t)acc + (uint64_t)row[j]);
        return acc;
    case RD_PROD:
        acc = 1;
        for (int64_t j = 0; j < count; j++) acc = (int64_t)((uint64_t)acc * (uint64_t)row[j]);
        return acc;
    case RD_AMAX:
    case RD_AMIN:
        acc = row[0];
        for (int64_t j = 1; j < count; j++)
            if (k == RD_AMAX ? row[j] > acc : row[j] < acc) acc = row[j];
        return acc;
    default: return 0; /* the other kinds always run in double */
    }
}

/* A float sum or mean over one dim followed by a kept innermost dim of
 * stride 1 (an MoE layer's weighted sum over its top-k, (T, k, H) -> (T,
 * H)): each block of `inner` outputs adds its count rows into doubles,
 * rows in order, so every output gets the same additions in the same
 * order as the gathered path below, reading whole rows instead of one
 * element at a time.  False when x does not have that layout. */
static bool rd_sum_rows(const rd_plan *p, rd_kind k, pt_tensor *out, double *acc) {
    const pt_tensor *x = p->t;
    if ((k != RD_SUM && k != RD_MEAN) || p->nr != 1 || p->nk < 1 || p->kstride[p->nk - 1] != 1 ||
        !ew_is_float(x->dtype) || !ew_is_float(out->dtype) || p->count < 1)
        return false;
    int64_t inner = p->kshape[p->nk - 1], es = (int64_t)pt_elsize(x), rs = p->rstride[0] * es;
    for (int64_t o0 = 0; o0 < p->outer; o0 += inner) {
        const uint8_t *row = x->data + rd_base(p, o0) * es;
        for (int64_t i = 0; i < inner; i++) acc[i] = 0;
        for (int64_t j = 0; j < p->count; j++, row += rs)
            for (int64_t i = 0; i < inner; i++) acc[i] += pt_load_f64(row + i * es, x->dtype);
        for (int64_t i = 0; i < inner; i++)
            pt_store_f64(ew_elem(out, o0 + i), out->dtype, k == RD_MEAN ? acc[i] / (double)p->count : acc[i]);
    }
    return true;
}

/* Reduce x over mask into output 0.  Integer sums, products and extremes
 * stay in int64 when the output is an integer dtype; everything else is
 * computed in double. */
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
    bool int_math = !ew_is_float(out->dtype) &&
                    (k == RD_SUM || k == RD_PROD || k == RD_AMAX || k == RD_AMIN);
    if (p.outer > 0 && p.nk > 0 && p.kshape[p.nk - 1] > 0) {
        double *acc = (double *)rd_row(ex, p.kshape[p.nk - 1]);
        if (!acc) return EW_NOMEM(ex);
        if (rd_sum_rows(&p, k, out, acc)) return PETREL_OK;
    }
    void *row = rd_row(ex, p.count);
    if (!row) return EW_NOMEM(ex);
    for (int64_t o = 0; o < p.outer; o++) {
        if (int_math) {
            rd_gather_i64(&p, o, (int64_t *)row);
            pt_store_i64(ew_elem(out, o), out->dtype, rd_value_i64(k, (int64_t *)row, p.count));
        } else {
            rd_gather_f64(&p, o, (double *)row);
            pt_store_f64(ew_elem(out, o), out->dtype, rd_value_f64(k, (double *)row, p.count, ord));
        }
    }
    return PETREL_OK;
}

/* ---- extremes with indices ----------------------------------------------- */

/* max.dim / min.dim (values and indices) and argmax / argmin (indices
 * only).  The index is the first position of the extreme along the
 * reduced dims walked row-major (the flat index when all dims reduce);
 * NaN counts as the extreme for both max and min, as in torch. */
static petrel_status rd_extreme(pt_exec *ex, const pt_node *n, const pt_tensor *x,
                                const bool *mask, bool keepdim, bool want_max, bool with_values) {
    rd_plan p;
    rd_make(&p, x, mask, keepdim);
    if (p.count == 0 && p.outer > 0)
        return pk_fail(ex, PETREL_ERR_RUNTIME,
                       "cannot reduce over a zero-size dimension (the op has no identity)");
    pt_tensor *vals = NULL, *inds;
    if (with_values) {
        PT_TRY(ew_out_alloc(ex, n, 0, ew_out_dtype(ex, n, 0, x->dtype), p.out_rank, p.out_shape,
                            &vals));
        PT_TRY(ew_out_alloc(ex, n, 1, PETREL_DTYPE_I64, p.out_rank, p.out_shape, &inds));
    } else {
        PT_TRY(pk_out_alloc_dtype(ex, n, 0, PETREL_DTYPE_I64, p.out_rank, p.out_shape, &inds));
    }
    bool fl = ew_is_float(x->dtype);
    void *row = rd_row(ex, p.count);
    if (!row) return EW_NOMEM(ex);
    for (int64_t o = 0; o < p.outer; o++) {
        int64_t best = 0;
        if (fl) {
            const double *r = (const double *)row;
            rd_gather_f64(&p, o, (double *)row);
            for (int64_t j = 1; j < p.count && !isnan(r[best]); j++)
                if (isnan(r[j]) || (want_max ? r[j] > r[best] : r[j] < r[best])) best = j;
            if (vals) pt_store_f64(ew_elem(vals, o), vals->dtype, r[best]);
        } else {
            const int64_t *r = (const int64_t *)row;
            rd_gather_i64(&p, o, (int64_t *)row);
            for (int64_t j = 1; j < p.count; j++)
                if (want_max ? r[j] > r[best] : r[j] < r[best]) best = j;
            if (vals) pt_store_i64(ew_elem(vals, o), vals->dtype, r[best]);
        }
        pt_store_i64(ew_elem(inds, o), inds->dtype, best);
    }
    return PETREL_OK;
}

/* ---- variance ------------------------------------------------------------ */

/* var / std (output 0) and var_mean (outputs var, mean), two-pass in
 * double.  The divisor is max(N - correction, 0), so a single element with
 * correction 1 gives NaN like torch. */
static petrel_status rd_var(pt_exec *ex, const pt_node *n, const pt_tensor *x, const bool *mask,
                            bool keepdim, double correction, bool take_sqrt, bool with_mean) {
    rd_plan p;
    rd_make(&p, x, mask, keepdim);
    pt_tensor *var, *mean = NULL;
    PT_TRY(pk_out_alloc(ex, n, 0, p.out_rank, p.out_shape, &var));
    if (with_mean)
        PT_TRY(ew_out_alloc(ex, n, 1, ew_out_dtype(ex, n, 1, var->dtype), p.out_rank, p.out_shape,
                            &mean));
    double *row = (double *)rd_row(ex, p.count);
    if (!row) return EW_NOMEM(ex);
    double divisor = fmax((double)p.count - correction, 0.0);
    for (int64_t o = 0; o < p.outer; o++) {
        rd_gather_f64(&p, o, row);
        double m = 0, ss = 0;
        for (int64_t j = 0; j < p.count; j++) m += row[j];
        m /= (double)p.count;
        for (int64_t j = 0; j < p.count; j++) ss += (row[j] - m) * (row[j] - m);
        double v = ss / divisor;
        pt_store_f64(ew_elem(var, o), var->dtype, take_sqrt ? sqrt(v) : v);
        if (mean) pt_store_f64(ew_elem(mean, o), mean->dtype, m);
    }
    return PETREL_OK;
}

/* ---- dim-wise ops (output has the input's shape) ------------------------- */

typedef enum rd_along_kind { RD_CUMSUM, RD_SOFTMAX, RD_LOG_SOFTMAX } rd_along_kind;

/* Softmax of a row in place, in double with the max subtracted so large
 * logits do not overflow. */
static void rd_softmax_row(double *row, int64_t count, bool log_form) {
    if (count == 0) return;
    double m = row[0];
    for (int64_t j = 1; j < count; j++) m = row[j] > m || isnan(row[j]) ? row[j] : m;
    double s = 0;
    for (int64_t j = 0; j < count; j++) s += exp(row[j] - m);
    for (int64_t j = 0; j < count; j++) row[j] = log_form ? row[j] - m - log(s) : exp(row[j] - m) / s;
}

static petrel_status rd_along(pt_exec *ex, const pt_node *n, const pt_tensor *x, int64_t dim,
                              rd_along_kind k) {
    bool mask[PETREL_MAX_RANK] = {0};
    PT_TRY(rd_mark(ex, dim, x->rank, mask));
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    rd_plan pin, pout;
    rd_make(&pin, x, mask, true);
    rd_make(&pout, out, mask, true);
    void *row = rd_row(ex, pin.count);
    if (!row) return EW_NOMEM(ex);
    bool int_math = k == RD_CUMSUM && !ew_is_float(out->dtype);
    for (int64_t o = 0; o < pin.outer; o++) {
        if (int_math) {
            int64_t *r = (int64_t *)row;
            rd_gather_i64(&pin, o, r);
            for (int64_t j = 1; j < pin.count; j++) r[j] = (int64_t)((uint64_t)r[j] + (uint64_t)r[j - 1]);
            rd_scatter_i64(&pout, o, r);
        } else {
            double *r = (double *)row;
            rd_gather_f64(&pin, o, r);
            if (k == RD_CUMSUM)
                for (int64_t j = 1; j < pin.count; j++) r[j] += r[j - 1];
            else
                rd_softmax_row(r, pin.count, k == RD_LOG_SOFTMAX);
            rd_scatter_f64(&pout, o, r);
        }
    }
    return PETREL_OK;
}

/* ---- histogram ----------------------------------------------------------- */

/* histc(self, bins, min, max): counts of the elements in `bins` equal
 * bins over [min, max] (the data's own range when min == max), the last
 * bin closed.  The bin of x is computed like torch's CPU kernel, in the
 * input dtype's arithmetic ((x - lo) * bins / (hi - lo), truncated), so
 * elements on a bin edge land where torch puts them.  Elements outside
 * the range and NaNs are not counted. */
static petrel_status rd_histc(pt_exec *ex, const pt_node *n, const pt_tensor *x) {
    int64_t bins = pk_int(ex, n, 1);
    if (bins <= 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "histc: bins must be > 0");
    if (!ew_is_float(x->dtype))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "histc: needs a float tensor, got %s",
                       petrel_dtype_name(x->dtype));
    double lo = pk_float(ex, n, 2), hi = pk_float(ex, n, 3);
    bool mask[PETREL_MAX_RANK];
    rd_all(x->rank, mask);
    rd_plan p;
    rd_make(&p, x, mask, false);
    double *row = (double *)rd_row(ex, p.count);
    if (!row) return EW_NOMEM(ex);
    rd_gather_f64(&p, 0, row);
    if (lo == hi && p.count > 0) {
        /* torch takes aminmax of the data, where a NaN wins (and then fails) */
        lo = rd_max_f64(row, p.count, false);
        hi = rd_max_f64(row, p.count, true);
    }
    if (lo == hi) {
        lo -= 1;
        hi += 1;
    }
    if (!isfinite(lo) || !isfinite(hi))
        return pk_fail(ex, PETREL_ERR_RUNTIME, "histc: range of [%g, %g] is not finite", lo, hi);
    if (!(lo < hi)) return pk_fail(ex, PETREL_ERR_RUNTIME, "histc: max must be larger than min");
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 1, &bins, &out));
    double *counts = (double *)rd_row(ex, bins);
    if (!counts) return EW_NOMEM(ex);
    for (int64_t b = 0; b < bins; b++) counts[b] = 0;
    petrel_dtype dt = x->dtype;
    /* the edges torch uses are linspace(lo, hi) in the input dtype */
    lo = ew_round(lo, dt);
    hi = ew_round(hi, dt);
    for (int64_t j = 0; j < p.count; j++) {
        double v = row[j];
        if (!(v >= lo && v <= hi)) continue;
        double num = ew_round(ew_round(v - lo, dt) * ew_round((double)bins, dt), dt);
        int64_t pos = (int64_t)ew_round(num / ew_round(hi - lo, dt), dt);
        if (pos >= bins) pos = bins - 1;
        if (pos < 0) pos = 0;
        counts[pos] += 1;
    }
    for (int64_t b = 0; b < bins; b++) pt_store_f64(ew_elem(out, b), out->dtype, counts[b]);
    return PETREL_OK;
}

/* ---- kernel -------------------------------------------------------------- */

/*
** cpu_k_reduce -- every op of the "reduce" family in ops.def.  Reads the
** input tensor (argument 0) and the dims / keepdim / correction / ord
** arguments by schema position; the dtype= arguments only change the
** output dtype, which the exported meta already has.  Fails on a dim out
** of range or repeated, and on an empty reduction for ops without an
** identity (max, min, amax, amin, argmax, argmin, inf and negative
** norms).
*/
petrel_status cpu_k_reduce(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_RUNTIME, "argument 0 must be a tensor");
    bool mask[PETREL_MAX_RANK];
    int r = x->rank;
    switch (n->op) {
    case PETREL_OP_SUM:
    case PETREL_OP_MEAN:
    case PETREL_OP_PROD:
    case PETREL_OP_MAX:
    case PETREL_OP_MIN:
    case PETREL_OP_ANY:
    case PETREL_OP_ALL: {
        static const rd_kind kinds[] = {RD_SUM, RD_MEAN, RD_PROD, RD_AMAX, RD_AMIN, RD_ANY, RD_ALL};
        static const pt_op ops[] = {PETREL_OP_SUM, PETREL_OP_MEAN, PETREL_OP_PROD, PETREL_OP_MAX,
                                    PETREL_OP_MIN, PETREL_OP_ANY,  PETREL_OP_ALL};
        rd_kind k = RD_SUM;
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            if (ops[i] == n->op) k = kinds[i];
        rd_all(r, mask);
        return rd_simple(ex, n, x, k, mask, false, 0);
    }
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
    case PETREL_OP_HISTC:
        return rd_histc(ex, n, x);
    case PETREL_OP_CUMSUM:
        return rd_along(ex, n, x, pk_int(ex, n, 1), RD_CUMSUM);
    case PETREL_OP_SOFTMAX_:
    case PETREL_OP_SOFTMAX_INT:
        return rd_along(ex, n, x, pk_int(ex, n, 1), RD_SOFTMAX);
    case PETREL_OP_LOG_SOFTMAX_:
    case PETREL_OP_LOG_SOFTMAX_INT:
        return rd_along(ex, n, x, pk_int(ex, n, 1), RD_LOG_SOFTMAX);
    default:
        return pk_fail(ex, PETREL_ERR_RUNTIME, "not a reduction op");
    }
}
