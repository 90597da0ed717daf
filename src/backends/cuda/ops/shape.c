/*
** shape.c -- the CUDA "shape" family: cat, stack, repeat,
** repeat_interleave, tril, triu, roll, flip, constant_pad_nd, pad (all four
** modes) and diff.  Host side: the same argument checks and output shapes
** as backends/cpu/ops/shape.c, then one launch (shape_k.cu).
**
** cat and stack copy contiguous inputs of the output dtype as byte rows
** (16-byte units when sizes and pointers allow) and anything else through
** a strided, converting gather.  The other ops are one generic gather:
** per output dim a rule maps the output coordinate to the source one.
*/
#include <string.h>

#include "shape_k.h"

#define SHP_WRAP_DIM(ex, var, dim, rank)                                                  \
    do {                                                                                  \
        (var) = pt_wrap_dim((dim), (rank));                                               \
        if ((var) < 0)                                                                    \
            return pk_fail((ex), PETREL_ERR_RUNTIME, "dim %lld out of range for rank %d", \
                           (long long)(dim), (int)(rank));                                \
    } while (0)

/* A wrapped Python number has no device copy to read from. */
static petrel_status shp_on_device(pt_exec *ex, const pt_tensor *t) {
    if (pcu_is_host_scalar(t))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "a Python number where a device tensor is needed");
    return PETREL_OK;
}

static int64_t shp_prod(const int64_t *s, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= s[i];
    return p;
}

/* ---- cat / stack ---------------------------------------------------------- */

/* Up to PCU_CAT_MAX inputs as byte rows: they are contiguous and of the
 * output's dtype.  *at is the running offset along d. */
static petrel_status shp_cat_bytes(pt_exec *ex, const pt_tensor *const *ts, int count, int d,
                                   const pt_tensor *out, int64_t *at) {
    pcu_cat_bytes a;
    memset(&a, 0, sizeof a);
    int64_t inner = shp_prod(out->shape, d + 1, out->rank) * (int64_t)pt_elsize(out);
    a.out = out->data;
    a.outer = shp_prod(out->shape, 0, d);
    a.out_row = out->shape[d] * inner;
    a.n = count;
    for (int i = 0; i < count; i++) {
        a.src[i] = ts[i]->data;
        a.row[i] = ts[i]->shape[d] * inner;
        a.at[i] = *at * inner;
        *at += ts[i]->shape[d];
    }
    PCU_LAUNCHED(ex, pcu_cat_bytes_launch(&a, pcu_stream(ex)), "cat kernel");
    return PETREL_OK;
}

/* Up to PCU_CAT_MAX inputs of any strides and dtypes; *at is the running
 * offset along d. */
static petrel_status shp_cat_strided(pt_exec *ex, const pt_tensor *const *ts, int count, int d,
                                     const pt_tensor *out, int64_t *at) {
    pcu_cat_strided a;
    memset(&a, 0, sizeof a);
    a.out = out->data;
    a.odt = (int32_t)out->dtype;
    a.rank = out->rank;
    a.dim = d;
    a.n = count;
    for (int i = 0; i < out->rank; i++) a.oshape[i] = out->shape[i];
    for (int i = 0; i < count; i++) {
        a.src[i] = pcu_desc(ts[i]);
        a.numel[i] = pt_numel(ts[i]);
        a.at[i] = *at;
        *at += ts[i]->shape[d];
    }
    PCU_LAUNCHED(ex, pcu_cat_strided_launch(&a, pcu_stream(ex)), "cat kernel");
    return PETREL_OK;
}

/* Place ts[0..count) (each with out's rank, non-empty) one after the other
 * along dim d of out, PCU_CAT_MAX per launch. */
static petrel_status shp_join(pt_exec *ex, const pt_tensor *const *ts, int count, int d,
                              const pt_tensor *out) {
    int64_t at = 0;
    for (int first = 0; first < count; first += PCU_CAT_MAX) {
        int m = count - first < PCU_CAT_MAX ? count - first : PCU_CAT_MAX;
        bool bytes = true;
        for (int i = first; i < first + m; i++)
            bytes = bytes && ts[i]->dtype == out->dtype && pt_is_contiguous(ts[i]);
        if (bytes)
            PT_TRY(shp_cat_bytes(ex, ts + first, m, d, out, &at));
        else
            PT_TRY(shp_cat_strided(ex, ts + first, m, d, out, &at));
    }
    return PETREL_OK;
}

/* torch.cat: 1-D empty inputs are skipped (legacy behaviour); the others
 * must agree on every dim but `dim`. */
static petrel_status shp_cat(pt_exec *ex, const pt_node *n) {
    int count;
    const pt_tensor **ts = pk_tensors(ex, n, 0, &count);
    if (!ts && count > 0) return pk_fail(ex, PETREL_ERR_NOMEM, "out of scratch memory");
    const pt_tensor *ref = NULL;
    for (int i = 0; i < count; i++) {
        if (!ts[i]) return pk_fail(ex, PETREL_ERR_SHAPE, "cat of a None tensor");
        PT_TRY(shp_on_device(ex, ts[i]));
        if (ts[i]->rank == 1 && ts[i]->shape[0] == 0) continue;
        if (!ref) ref = ts[i];
    }
    pt_tensor *out;
    if (!ref) {
        int64_t zero = 0;
        return pk_out_alloc(ex, n, 0, 1, &zero, &out);
    }
    if (ref->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "cat of a 0-d tensor");
    int d;
    SHP_WRAP_DIM(ex, d, pk_int(ex, n, 1), ref->rank);
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0; i < ref->rank; i++) shape[i] = ref->shape[i];
    shape[d] = 0;
    /* the inputs that contribute elements, in order (pk_tensors' array is
     * the node's own scratch, so it is compacted in place) */
    int kept = 0;
    for (int i = 0; i < count; i++) {
        const pt_tensor *t = ts[i];
        if (t->rank == 1 && t->shape[0] == 0) continue;
        if (t->rank != ref->rank)
            return pk_fail(ex, PETREL_ERR_SHAPE, "cat of tensors of rank %d and %d", ref->rank,
                           t->rank);
        for (int j = 0; j < t->rank; j++)
            if (j != d && t->shape[j] != ref->shape[j])
                return pk_fail(ex, PETREL_ERR_SHAPE, "cat: sizes differ at dim %d (%lld vs %lld)",
                               j, (long long)t->shape[j], (long long)ref->shape[j]);
        shape[d] += t->shape[d];
        if (pt_numel(t) > 0) ts[kept++] = t;
    }
    PT_TRY(pk_out_alloc(ex, n, 0, ref->rank, shape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    return shp_join(ex, ts, kept, d, out);
}

/* torch.stack: same-shape inputs placed along a new dim, i.e. a cat of
 * the inputs viewed with a size-1 dim inserted at `dim`. */
static petrel_status shp_stack(pt_exec *ex, const pt_node *n) {
    int count;
    const pt_tensor **ts = pk_tensors(ex, n, 0, &count);
    if (count < 1 || !ts) return pk_fail(ex, PETREL_ERR_SHAPE, "stack of an empty list");
    const pt_tensor *ref = ts[0];
    for (int i = 0; i < count; i++) {
        if (!ts[i]) return pk_fail(ex, PETREL_ERR_SHAPE, "stack of a None tensor");
        PT_TRY(shp_on_device(ex, ts[i]));
        bool same = ts[i]->rank == ref->rank;
        for (int j = 0; same && j < ref->rank; j++) same = ts[i]->shape[j] == ref->shape[j];
        if (!same) return pk_fail(ex, PETREL_ERR_SHAPE, "stack expects tensors of equal shape");
    }
    if (ref->rank + 1 > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_SHAPE, "rank too large");
    int d;
    SHP_WRAP_DIM(ex, d, pk_int(ex, n, 1), ref->rank + 1);
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0, j = 0; i <= ref->rank; i++) shape[i] = i == d ? count : ref->shape[j++];
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, ref->rank + 1, shape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    pt_tensor *views = (pt_tensor *)pk_scratch(ex, (size_t)count * sizeof *views);
    const pt_tensor **vp = (const pt_tensor **)pk_scratch(ex, (size_t)count * sizeof *vp);
    if (!views || !vp) return pk_fail(ex, PETREL_ERR_NOMEM, "out of scratch memory");
    for (int i = 0; i < count; i++) {
        pt_tensor *v = &views[i];
        *v = *ts[i];
        v->rank = ref->rank + 1;
        for (int k = 0, j = 0; k <= ref->rank; k++) {
            v->shape[k] = k == d ? 1 : ts[i]->shape[j];
            v->stride[k] = k == d ? 0 : ts[i]->stride[j];
            if (k != d) j++;
        }
        vp[i] = v;
    }
    return shp_join(ex, vp, count, d, out);
}

/* ---- the generic gather --------------------------------------------------- */

/* A remap from src (already viewed with out's rank, unless flat) into out:
 * identity on every dim, no fill; callers set what differs. */
static void shp_remap_init(pcu_remap *a, const pt_tensor *src, const pt_tensor *out) {
    memset(a, 0, sizeof *a);
    a->src = pcu_desc(src);
    a->out = out->data;
    a->odt = (int32_t)out->dtype;
    a->rank = out->rank;
    for (int i = 0; i < out->rank; i++) a->oshape[i] = out->shape[i];
    a->numel = pt_numel(out);
}

static petrel_status shp_remap_run(pt_exec *ex, const pcu_remap *a) {
    if (a->numel == 0) return PETREL_OK;
    PCU_LAUNCHED(ex, pcu_remap_launch(a, pcu_stream(ex)), "shape kernel");
    return PETREL_OK;
}

/* How an out-of-range source coordinate is resolved while padding. */
static const int32_t shp_pad_map[] = {PCU_MAP_PAD, PCU_MAP_REFLECT, PCU_MAP_REPLICATE,
                                      PCU_MAP_CIRCULAR};
enum { PAD_CONSTANT, PAD_REFLECT, PAD_REPLICATE, PAD_CIRCULAR };

/* Padding: pad = (last-dim left, last-dim right, next-to-last left, ...).
 * Output element idx reads x at idx - left on each padded dim, resolved by
 * `mode` when that falls outside; constant mode writes the value there
 * (negative pads crop). */
static petrel_status shp_pad(pt_exec *ex, const pt_node *n, const pt_tensor *x, int mode,
                             bool value_is_int, int64_t ivalue, double fvalue) {
    int64_t pad[PETREL_MAX_RANK * 2];
    int c = pk_ints(ex, n, 1, pad, PETREL_MAX_RANK * 2);
    if (c % 2 != 0 || c / 2 > x->rank)
        return pk_fail(ex, PETREL_ERR_SHAPE, "pad of length %d for a %d-D tensor", c, x->rank);
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0; i < x->rank; i++) shape[i] = x->shape[i];
    for (int i = 0; i < c / 2; i++) {
        int dd = x->rank - 1 - i;
        shape[dd] += pad[2 * i] + pad[2 * i + 1];
        if (shape[dd] < 0)
            return pk_fail(ex, PETREL_ERR_SHAPE, "padding makes dim %d negative", dd);
        if (mode != PAD_CONSTANT) {
            if (pad[2 * i] < 0 || pad[2 * i + 1] < 0)
                return pk_fail(ex, PETREL_ERR_SHAPE, "negative padding needs mode 'constant'");
            int64_t lim = mode == PAD_REFLECT ? x->shape[dd] - 1 : x->shape[dd];
            if (x->shape[dd] == 0 || (mode != PAD_REPLICATE && (pad[2 * i] > lim ||
                                                                pad[2 * i + 1] > lim)))
                return pk_fail(ex, PETREL_ERR_SHAPE, "padding (%lld, %lld) too large for size %lld",
                               (long long)pad[2 * i], (long long)pad[2 * i + 1],
                               (long long)x->shape[dd]);
        }
    }
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, shape, &out));
    pcu_remap a;
    shp_remap_init(&a, x, out);
    for (int i = 0; i < c / 2; i++) {
        int dd = x->rank - 1 - i;
        a.mode[dd] = shp_pad_map[mode];
        a.arg[dd] = pad[2 * i];
    }
    a.fill_is_int = value_is_int;
    a.fill_i = ivalue;
    a.fill_f = fvalue;
    return shp_remap_run(ex, &a);
}

static petrel_status shp_repeat(pt_exec *ex, const pt_node *n, const pt_tensor *x) {
    int64_t list[PETREL_MAX_RANK * 2], shape[PETREL_MAX_RANK], xs[PETREL_MAX_RANK];
    int c = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
    if (c < x->rank || c > PETREL_MAX_RANK)
        return pk_fail(ex, PETREL_ERR_SHAPE, "repeat of a %d-D tensor with %d repeats", x->rank, c);
    int off = c - x->rank;
    for (int i = 0; i < c; i++) {
        xs[i] = i < off ? 1 : x->shape[i - off];
        if (list[i] < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "negative repeat count");
        shape[i] = xs[i] * list[i];
    }
    pt_tensor xv, *out; /* x with leading size-1 dims: (c dims) */
    pt_broadcast_to(x, c, xs, &xv);
    PT_TRY(pk_out_alloc(ex, n, 0, c, shape, &out));
    pcu_remap a;
    shp_remap_init(&a, &xv, out);
    for (int i = 0; i < c; i++) a.mode[i] = PCU_MAP_MOD;
    return shp_remap_run(ex, &a);
}

static petrel_status shp_repeat_interleave(pt_exec *ex, const pt_node *n, const pt_tensor *x) {
    int64_t rep = pk_int(ex, n, 1), shape[PETREL_MAX_RANK];
    if (rep < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "negative repeats");
    pt_tensor *out;
    pcu_remap a;
    if (pk_is_none(ex, n, 2)) {
        /* flattened: each element repeated rep times in row-major order */
        shape[0] = pt_numel(x) * rep;
        PT_TRY(pk_out_alloc(ex, n, 0, 1, shape, &out));
        shp_remap_init(&a, x, out);
        a.flat = 1;
        a.flat_div = rep;
        a.flat_mod = pt_numel(x);
        return shp_remap_run(ex, &a);
    }
    int d;
    SHP_WRAP_DIM(ex, d, pk_int(ex, n, 2), x->rank);
    int r = x->rank > 0 ? x->rank : 1;
    pt_tensor xv = *x; /* a 0-d x acts as shape (1) */
    if (x->rank == 0) xv.rank = 1, xv.shape[0] = 1, xv.stride[0] = 0;
    for (int i = 0; i < r; i++) shape[i] = xv.shape[i];
    shape[d] *= rep;
    PT_TRY(pk_out_alloc(ex, n, 0, r, shape, &out));
    shp_remap_init(&a, &xv, out);
    a.mode[d] = PCU_MAP_DIV;
    a.arg[d] = rep;
    return shp_remap_run(ex, &a);
}

static petrel_status shp_roll(pt_exec *ex, const pt_node *n, const pt_tensor *x) {
    int64_t list[PETREL_MAX_RANK * 2], dims[PETREL_MAX_RANK * 2], shifts[PETREL_MAX_RANK] = {0};
    int cs = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
    int cd = pk_ints(ex, n, 2, dims, PETREL_MAX_RANK * 2);
    pt_tensor *out;
    pcu_remap a;
    if (cd == 0) {
        /* roll the flattened tensor, then restore the shape */
        if (cs != 1) return pk_fail(ex, PETREL_ERR_SHAPE, "roll without dims takes one shift");
        int64_t numel = pt_numel(x);
        PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
        if (numel == 0) return PETREL_OK;
        shp_remap_init(&a, x, out);
        a.flat = 1;
        a.flat_div = 1;
        a.flat_mod = numel;
        a.flat_shift = ((list[0] % numel) + numel) % numel;
        return shp_remap_run(ex, &a);
    }
    if (cs != cd) return pk_fail(ex, PETREL_ERR_SHAPE, "roll: %d shifts for %d dims", cs, cd);
    for (int i = 0; i < cd; i++) {
        int d;
        SHP_WRAP_DIM(ex, d, dims[i], x->rank);
        shifts[d] += list[i]; /* repeated dims roll twice */
    }
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    shp_remap_init(&a, x, out);
    for (int i = 0; i < x->rank; i++) {
        a.mode[i] = PCU_MAP_ROLL;
        a.arg[i] = ((shifts[i] % x->shape[i]) + x->shape[i]) % x->shape[i];
    }
    return shp_remap_run(ex, &a);
}

/* ---- diff ----------------------------------------------------------------- */

/* Optional prepend/append operand of diff: rank and shape must match x
 * except along dim d; a 0-d one stands for a single slice.  Its length
 * along d goes to *len (0 when None). */
static petrel_status shp_diff_side(pt_exec *ex, const pt_tensor *x, const pt_tensor *t, int d,
                                   pt_tensor *view, int64_t *len) {
    *len = 0;
    *view = *x; /* never read when absent, but a valid description */
    if (!t) return PETREL_OK;
    PT_TRY(shp_on_device(ex, t));
    if (t->rank == 0) {
        int64_t shape[PETREL_MAX_RANK];
        for (int i = 0; i < x->rank; i++) shape[i] = i == d ? 1 : x->shape[i];
        pt_broadcast_to(t, x->rank, shape, view);
    } else {
        bool ok = t->rank == x->rank;
        for (int i = 0; ok && i < x->rank; i++) ok = i == d || t->shape[i] == x->shape[i];
        if (!ok) return pk_fail(ex, PETREL_ERR_SHAPE, "diff prepend/append shape does not match");
        *view = *t;
    }
    *len = view->shape[d];
    return PETREL_OK;
}

/* torch.diff: the n-th forward difference along dim of
 * cat([prepend, x, append]); bool tensors use xor. */
static petrel_status shp_diff(pt_exec *ex, const pt_node *n, const pt_tensor *x) {
    int64_t order = pk_int(ex, n, 1);
    if (order < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "diff order must be non-negative");
    if (order > PCU_DIFF_MAX_ORDER)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "diff of order %lld on CUDA (at most %d)",
                       (long long)order, PCU_DIFF_MAX_ORDER);
    if (x->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "diff of a 0-d tensor");
    int d;
    SHP_WRAP_DIM(ex, d, pk_int(ex, n, 2), x->rank);
    pt_tensor pre, app;
    int64_t lp, la;
    PT_TRY(shp_diff_side(ex, x, pk_tensor(ex, n, 3), d, &pre, &lp));
    PT_TRY(shp_diff_side(ex, x, pk_tensor(ex, n, 4), d, &app, &la));
    int64_t L = lp + x->shape[d] + la, outlen = L > order ? L - order : 0;
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0; i < x->rank; i++) shape[i] = i == d ? outlen : x->shape[i];
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, shape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    pcu_diff a;
    memset(&a, 0, sizeof a);
    a.part[0] = pcu_desc(&pre);
    a.part[1] = pcu_desc(x);
    a.part[2] = pcu_desc(&app);
    a.len[0] = lp;
    a.len[1] = x->shape[d];
    a.len[2] = la;
    a.dim = d;
    a.order = (int32_t)order;
    a.out = out->data;
    a.odt = (int32_t)out->dtype;
    a.rank = out->rank;
    for (int i = 0; i < out->rank; i++) a.oshape[i] = out->shape[i];
    a.numel = pt_numel(out);
    PCU_LAUNCHED(ex, pcu_diff_launch(&a, pcu_stream(ex)), "diff kernel");
    return PETREL_OK;
}

/*
** Kernel family "shape" on CUDA: cat, stack, repeat,
** repeat_interleave.self_int, tril, triu, roll, flip, diff (order <= 16),
** constant_pad_nd and pad (constant, reflect, replicate, circular).
*/
petrel_status cuda_k_shape(pt_exec *ex, const pt_node *n) {
    if (n->op == PETREL_OP_CAT) return shp_cat(ex, n);
    if (n->op == PETREL_OP_STACK) return shp_stack(ex, n);
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_SHAPE, "input is None");
    PT_TRY(shp_on_device(ex, x));
    pt_tensor *out;
    pcu_remap a;
    switch (n->op) {
    case PETREL_OP_REPEAT:
        return shp_repeat(ex, n, x);
    case PETREL_OP_REPEAT_INTERLEAVE:
        return shp_repeat_interleave(ex, n, x);
    case PETREL_OP_TRIL:
    case PETREL_OP_TRIU:
        if (x->rank < 2) return pk_fail(ex, PETREL_ERR_SHAPE, "tril/triu need a 2-D input");
        PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
        shp_remap_init(&a, x, out);
        a.tri = n->op == PETREL_OP_TRIL ? 1 : 2;
        a.tri_k = pk_int(ex, n, 1);
        a.fill_is_int = 1; /* zeros */
        return shp_remap_run(ex, &a);
    case PETREL_OP_ROLL:
        return shp_roll(ex, n, x);
    case PETREL_OP_FLIP: {
        int64_t list[PETREL_MAX_RANK * 2];
        int c = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
        PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
        shp_remap_init(&a, x, out);
        for (int i = 0; i < c; i++) {
            int d;
            SHP_WRAP_DIM(ex, d, list[i], x->rank);
            if (x->rank == 0) continue; /* flip of a 0-d tensor copies it */
            if (a.mode[d] == PCU_MAP_FLIP)
                return pk_fail(ex, PETREL_ERR_SHAPE, "flip repeats dim %d", d);
            a.mode[d] = PCU_MAP_FLIP;
        }
        return shp_remap_run(ex, &a);
    }
    case PETREL_OP_DIFF:
        return shp_diff(ex, n, x);
    case PETREL_OP_CONSTANT_PAD_ND: {
        bool is_int = pk_scalar_is_int(ex, n, 2);
        return shp_pad(ex, n, x, PAD_CONSTANT, is_int, pk_int(ex, n, 2), pk_float(ex, n, 2));
    }
    case PETREL_OP_PAD: {
        const char *mode = pk_str(ex, n, 2);
        int m;
        if (!mode || strcmp(mode, "constant") == 0)
            m = PAD_CONSTANT;
        else if (strcmp(mode, "reflect") == 0)
            m = PAD_REFLECT;
        else if (strcmp(mode, "replicate") == 0)
            m = PAD_REPLICATE;
        else if (strcmp(mode, "circular") == 0)
            m = PAD_CIRCULAR;
        else
            return pk_fail(ex, PETREL_ERR_RUNTIME, "pad mode '%s' is not supported", mode);
        if (m != PAD_CONSTANT && !pk_is_none(ex, n, 3) && pk_float(ex, n, 3) != 0.0)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "pad mode '%s' takes no value", mode);
        double v = pk_is_none(ex, n, 3) ? 0.0 : pk_float(ex, n, 3);
        return shp_pad(ex, n, x, m, false, 0, v);
    }
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a shape op", (int)n->op);
    }
}
