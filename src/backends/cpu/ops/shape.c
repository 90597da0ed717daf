/*
** shape.c -- CPU reference kernels that rearrange elements into a new
** tensor: cat, stack, repeat, repeat_interleave, tril, triu, roll, flip,
** constant_pad_nd and pad, plus diff.  Part of the CPU backend.
**
** Elements are copied, not recomputed (diff aside): same-dtype copies move
** bytes, so every dtype is exact; cat converts when torch promoted its
** inputs.
*/
#include "nn_util.h"

/* Byte offset of multi-index idx in a dense row-major tensor of `shape`. */
static int64_t shape_dense_offset(const int64_t *idx, const int64_t *shape, int rank,
                                  size_t es) {
    int64_t off = 0;
    for (int i = 0; i < rank; i++) off = off * shape[i] + idx[i];
    return off * (int64_t)es;
}

/* A view of `out` restricted to [start, start+len) along dim d. */
static pt_tensor shape_narrowed(const pt_tensor *out, int d, int64_t start, int64_t len) {
    pt_tensor v = *out;
    v.shape[d] = len;
    if (len > 0) v.data = out->data + start * out->stride[d] * (int64_t)pt_elsize(out);
    return v;
}

/* torch.cat: 1-D empty inputs are skipped (legacy behaviour); the others
 * must agree on every dim but `dim`. */
static petrel_status shape_cat(pt_exec *ex, const pt_node *n) {
    int count;
    const pt_tensor **ts = pk_tensors(ex, n, 0, &count);
    if (!ts && count > 0) return NU_NOMEM(ex);
    const pt_tensor *ref = NULL;
    for (int i = 0; i < count; i++) {
        if (!ts[i]) return pk_fail(ex, PETREL_ERR_SHAPE, "cat of a None tensor");
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
    NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), ref->rank);
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0; i < ref->rank; i++) shape[i] = ref->shape[i];
    shape[d] = 0;
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
    }
    PT_TRY(pk_out_alloc(ex, n, 0, ref->rank, shape, &out));
    int64_t at = 0;
    for (int i = 0; i < count; i++) {
        const pt_tensor *t = ts[i];
        if (t->rank == 1 && t->shape[0] == 0) continue;
        pt_tensor dst = shape_narrowed(out, d, at, t->shape[d]);
        pt_copy_into(&dst, t);
        at += t->shape[d];
    }
    return PETREL_OK;
}

/* torch.stack: same-shape inputs placed along a new dim. */
static petrel_status shape_stack(pt_exec *ex, const pt_node *n) {
    int count;
    const pt_tensor **ts = pk_tensors(ex, n, 0, &count);
    if (count < 1 || !ts) return pk_fail(ex, PETREL_ERR_SHAPE, "stack of an empty list");
    const pt_tensor *ref = ts[0];
    for (int i = 0; i < count; i++) {
        if (!ts[i]) return pk_fail(ex, PETREL_ERR_SHAPE, "stack of a None tensor");
        bool same = ts[i]->rank == ref->rank;
        for (int j = 0; same && j < ref->rank; j++) same = ts[i]->shape[j] == ref->shape[j];
        if (!same) return pk_fail(ex, PETREL_ERR_SHAPE, "stack expects tensors of equal shape");
    }
    if (ref->rank + 1 > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_SHAPE, "rank too large");
    int d;
    NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), ref->rank + 1);
    int64_t shape[PETREL_MAX_RANK];
    for (int i = 0, j = 0; i <= ref->rank; i++) shape[i] = i == d ? count : ref->shape[j++];
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, ref->rank + 1, shape, &out));
    for (int i = 0; i < count; i++) {
        /* out.select(d, i) has the inputs' shape */
        pt_tensor dst = *out;
        dst.rank = ref->rank;
        for (int k = 0, j = 0; k <= ref->rank; k++) {
            if (k == d) continue;
            dst.shape[j] = out->shape[k], dst.stride[j] = out->stride[k];
            j++;
        }
        dst.data = out->data + (int64_t)i * out->stride[d] * (int64_t)pt_elsize(out);
        if (pt_numel(&dst) > 0) pt_copy_into(&dst, ts[i]);
    }
    return PETREL_OK;
}

/* How an out-of-range source coordinate is resolved while padding. */
typedef enum shape_pad_mode {
    PAD_CONSTANT, PAD_REFLECT, PAD_REPLICATE, PAD_CIRCULAR
} shape_pad_mode;

/* Padding: pad = (last-dim left, last-dim right, next-to-last left, ...).
 * Output element idx reads x at idx - left on each padded dim, resolved by
 * `mode` when that falls outside; constant mode writes `value` there
 * (negative pads crop). */
static petrel_status shape_pad(pt_exec *ex, const pt_node *n, const pt_tensor *x,
                               shape_pad_mode mode, bool value_is_int, int64_t ivalue,
                               double fvalue) {
    int64_t pad[PETREL_MAX_RANK * 2];
    int c = pk_ints(ex, n, 1, pad, PETREL_MAX_RANK * 2);
    if (c % 2 != 0 || c / 2 > x->rank)
        return pk_fail(ex, PETREL_ERR_SHAPE, "pad of length %d for a %d-D tensor", c, x->rank);
    int64_t left[PETREL_MAX_RANK] = {0}, shape[PETREL_MAX_RANK];
    for (int i = 0; i < x->rank; i++) shape[i] = x->shape[i];
    for (int i = 0; i < c / 2; i++) {
        int dd = x->rank - 1 - i;
        left[dd] = pad[2 * i];
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
    if (pt_numel(out) == 0) return PETREL_OK;
    size_t es = pt_elsize(out);
    int64_t idx[PETREL_MAX_RANK] = {0}, src[PETREL_MAX_RANK];
    uint8_t *o = out->data;
    do {
        bool inside = true;
        for (int i = 0; i < x->rank; i++) {
            int64_t j = idx[i] - left[i], sz = x->shape[i];
            if (j < 0 || j >= sz) {
                switch (mode) {
                case PAD_CONSTANT: inside = false; break;
                case PAD_REFLECT: j = j < 0 ? -j : 2 * (sz - 1) - j; break;
                case PAD_REPLICATE: j = j < 0 ? 0 : sz - 1; break;
                case PAD_CIRCULAR: j = ((j % sz) + sz) % sz; break;
                }
            }
            src[i] = j;
        }
        if (inside)
            nu_copy_elem(o, out->dtype, pt_at(x, src), x->dtype);
        else if (value_is_int)
            pt_store_i64(o, out->dtype, ivalue);
        else
            pt_store_f64(o, out->dtype, fvalue);
        o += es;
    } while (pt_next_index(idx, shape, x->rank));
    return PETREL_OK;
}

/* Move every element of x to the dense output position `map` gives. */
typedef void (*shape_map_fn)(const int64_t *idx, const int64_t *shape, int rank,
                             const int64_t *arg, int64_t *dst);

/* roll: dst = (idx + shift) mod size on each dim (arg = per-dim shifts). */
static void shape_map_roll(const int64_t *idx, const int64_t *shape, int rank, const int64_t *arg,
                           int64_t *dst) {
    for (int i = 0; i < rank; i++) {
        int64_t s = shape[i] > 0 ? arg[i] % shape[i] : 0;
        dst[i] = (idx[i] + s + shape[i]) % (shape[i] > 0 ? shape[i] : 1);
    }
}

/* flip: dst = size - 1 - idx on flagged dims (arg[i] != 0). */
static void shape_map_flip(const int64_t *idx, const int64_t *shape, int rank, const int64_t *arg,
                           int64_t *dst) {
    for (int i = 0; i < rank; i++) dst[i] = arg[i] ? shape[i] - 1 - idx[i] : idx[i];
}

/* Output 0 (x's shape) with each element of x moved by `map`. */
static petrel_status shape_permute_elems(pt_exec *ex, const pt_node *n, const pt_tensor *x,
                                         shape_map_fn map, const int64_t *arg) {
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
    if (pt_numel(x) == 0) return PETREL_OK;
    size_t es = pt_elsize(out);
    int64_t idx[PETREL_MAX_RANK] = {0}, dst[PETREL_MAX_RANK];
    do {
        map(idx, x->shape, x->rank, arg, dst);
        nu_copy_elem(out->data + shape_dense_offset(dst, x->shape, x->rank, es), out->dtype,
                     pt_at(x, idx), x->dtype);
    } while (pt_next_index(idx, x->shape, x->rank));
    return PETREL_OK;
}

/* Value v rounded to dtype dt (an n-th difference is n subtractions, each
 * rounded to the tensor's dtype as in torch). */
static double shape_round(double v, petrel_dtype dt) {
    uint8_t b[8];
    pt_store_f64(b, dt, v);
    return pt_load_f64(b, dt);
}

static int64_t shape_wrap_int(int64_t v, petrel_dtype dt) {
    uint8_t b[8];
    pt_store_i64(b, dt, v);
    return pt_load_i64(b, dt);
}

/* Optional prepend/append operand of diff: rank and shape must match x
 * except along dim d; a 0-d one stands for a single slice.  Its length
 * along d goes to *len (0 when None). */
static petrel_status shape_diff_side(pt_exec *ex, const pt_tensor *x, const pt_tensor *t, int d,
                                     pt_tensor *view, int64_t *len) {
    *len = 0;
    if (!t) return PETREL_OK;
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
 * cat([prepend, x, append]); bool tensors use xor.  Each row along dim is
 * gathered into a buffer and differenced in place n times. */
static petrel_status shape_diff(pt_exec *ex, const pt_node *n, const pt_tensor *x) {
    int64_t order = pk_int(ex, n, 1);
    if (order < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "diff order must be non-negative");
    if (x->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "diff of a 0-d tensor");
    int d;
    NU_WRAP_DIM(ex, d, pk_int(ex, n, 2), x->rank);
    pt_tensor pre, app;
    int64_t lp, la, lx = x->shape[d];
    PT_TRY(shape_diff_side(ex, x, pk_tensor(ex, n, 3), d, &pre, &lp));
    PT_TRY(shape_diff_side(ex, x, pk_tensor(ex, n, 4), d, &app, &la));
    int64_t L = lp + lx + la, outlen = L > order ? L - order : 0;
    int64_t shape[PETREL_MAX_RANK], rows[PETREL_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        shape[i] = i == d ? outlen : x->shape[i];
        rows[i] = i == d ? 1 : x->shape[i];
    }
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, x->rank, shape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    petrel_dtype dt = out->dtype;
    bool fl = pt_dtype_is_float(dt), is_bool = dt == PETREL_DTYPE_BOOL;
    double *fv = (double *)nu_scratch(ex, L, sizeof(double));   /* (L) one row, floats */
    int64_t *iv = (int64_t *)nu_scratch(ex, L, sizeof(int64_t)); /* (L) one row, integers */
    if (!fv || !iv) return NU_NOMEM(ex);
    int64_t ostride[PETREL_MAX_RANK];
    nu_contig_strides(x->rank, shape, ostride);
    size_t es = pt_elsize(out);
    int64_t row[PETREL_MAX_RANK] = {0}, at[PETREL_MAX_RANK];
    do {
        /* gather cat([prepend, x, append]) along d */
        for (int64_t j = 0; j < L; j++) {
            const pt_tensor *src = j < lp ? &pre : j < lp + lx ? x : &app;
            for (int i = 0; i < x->rank; i++) at[i] = row[i];
            at[d] = j < lp ? j : j < lp + lx ? j - lp : j - lp - lx;
            const uint8_t *p = pt_at(src, at);
            if (fl)
                fv[j] = shape_round(pt_load_f64(p, src->dtype), dt);
            else
                iv[j] = shape_wrap_int(pt_load_i64(p, src->dtype), dt);
        }
        for (int64_t pass = 0, len = L; pass < order && len > 0; pass++, len--)
            for (int64_t j = 0; j + 1 < len; j++) {
                if (fl)
                    fv[j] = shape_round(fv[j + 1] - fv[j], dt);
                else if (is_bool)
                    iv[j] = iv[j + 1] != iv[j];
                else /* unsigned: wraps like torch's integer subtraction */
                    iv[j] = shape_wrap_int((int64_t)((uint64_t)iv[j + 1] - (uint64_t)iv[j]), dt);
            }
        int64_t base = 0;
        for (int i = 0; i < x->rank; i++) base += row[i] * ostride[i];
        for (int64_t j = 0; j < outlen; j++) {
            uint8_t *o = out->data + (base + j * ostride[d]) * (int64_t)es;
            if (fl)
                pt_store_f64(o, dt, fv[j]);
            else
                pt_store_i64(o, dt, iv[j]);
        }
    } while (pt_next_index(row, rows, x->rank));
    return PETREL_OK;
}

/*
** Kernel family "shape": cat, stack, repeat, repeat_interleave.self_int,
** tril, triu, roll, flip, diff, constant_pad_nd and pad (constant,
** reflect, replicate and circular modes).
*/
petrel_status cpu_k_shape(pt_exec *ex, const pt_node *n) {
    if (n->op == PETREL_OP_CAT) return shape_cat(ex, n);
    if (n->op == PETREL_OP_STACK) return shape_stack(ex, n);
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_SHAPE, "input is None");
    int64_t list[PETREL_MAX_RANK * 2], shape[PETREL_MAX_RANK];
    pt_tensor *out;
    switch (n->op) {
    case PETREL_OP_REPEAT: {
        int c = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
        if (c < x->rank || c > PETREL_MAX_RANK)
            return pk_fail(ex, PETREL_ERR_SHAPE, "repeat of a %d-D tensor with %d repeats",
                           x->rank, c);
        int off = c - x->rank;
        pt_tensor xv; /* x with leading size-1 dims: (c dims) */
        int64_t xs[PETREL_MAX_RANK];
        for (int i = 0; i < c; i++) {
            xs[i] = i < off ? 1 : x->shape[i - off];
            if (list[i] < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "negative repeat count");
            shape[i] = xs[i] * list[i];
        }
        pt_broadcast_to(x, c, xs, &xv);
        PT_TRY(pk_out_alloc(ex, n, 0, c, shape, &out));
        if (pt_numel(out) == 0) return PETREL_OK;
        size_t es = pt_elsize(out);
        int64_t idx[PETREL_MAX_RANK] = {0}, src[PETREL_MAX_RANK];
        uint8_t *o = out->data;
        do {
            for (int i = 0; i < c; i++) src[i] = idx[i] % xs[i];
            nu_copy_elem(o, out->dtype, pt_at(&xv, src), x->dtype);
            o += es;
        } while (pt_next_index(idx, shape, c));
        return PETREL_OK;
    }
    case PETREL_OP_REPEAT_INTERLEAVE: {
        int64_t rep = pk_int(ex, n, 1);
        if (rep < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "negative repeats");
        size_t es;
        if (pk_is_none(ex, n, 2)) {
            /* flattened: each element repeated rep times in row-major order */
            shape[0] = pt_numel(x) * rep;
            PT_TRY(pk_out_alloc(ex, n, 0, 1, shape, &out));
            if (shape[0] == 0) return PETREL_OK;
            es = pt_elsize(out);
            int64_t idx[PETREL_MAX_RANK] = {0};
            uint8_t *o = out->data;
            do {
                for (int64_t r = 0; r < rep; r++, o += es)
                    nu_copy_elem(o, out->dtype, pt_at(x, idx), x->dtype);
            } while (pt_next_index(idx, x->shape, x->rank));
            return PETREL_OK;
        }
        int d;
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 2), x->rank);
        int r = x->rank > 0 ? x->rank : 1;
        for (int i = 0; i < r; i++) shape[i] = x->rank > 0 ? x->shape[i] : 1;
        shape[d] *= rep;
        PT_TRY(pk_out_alloc(ex, n, 0, r, shape, &out));
        if (pt_numel(out) == 0) return PETREL_OK;
        if (x->rank == 0 || x->rank >= PETREL_MAX_RANK || out->dtype != x->dtype) {
            es = pt_elsize(out);
            int64_t idx[PETREL_MAX_RANK] = {0}, src[PETREL_MAX_RANK];
            uint8_t *o = out->data;
            do {
                for (int i = 0; i < x->rank; i++) src[i] = i == d ? idx[i] / rep : idx[i];
                nu_copy_elem(o, out->dtype, pt_at(x, src), x->dtype);
                o += es;
            } while (pt_next_index(idx, shape, r));
            return PETREL_OK;
        }
        /* out viewed as (..., x.shape[d], rep, ...) is x with a stride-0 dim
         * of rep after d: one copy (whole rows when the dims after d are) */
        pt_tensor dv = *out, sv = *x;
        dv.rank = sv.rank = x->rank + 1;
        for (int i = x->rank; i > d + 1; i--) {
            dv.shape[i] = out->shape[i - 1], dv.stride[i] = out->stride[i - 1];
            sv.shape[i] = x->shape[i - 1], sv.stride[i] = x->stride[i - 1];
        }
        dv.shape[d] = sv.shape[d] = x->shape[d];
        dv.shape[d + 1] = sv.shape[d + 1] = rep;
        dv.stride[d + 1] = out->stride[d], dv.stride[d] = out->stride[d] * rep;
        sv.stride[d + 1] = 0;
        pt_copy_into(&dv, &sv);
        return PETREL_OK;
    }
    case PETREL_OP_TRIL:
    case PETREL_OP_TRIU: {
        if (x->rank < 2) return pk_fail(ex, PETREL_ERR_SHAPE, "tril/triu need a 2-D input");
        int64_t k = pk_int(ex, n, 1);
        bool lower = n->op == PETREL_OP_TRIL;
        PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
        if (pt_numel(out) == 0) return PETREL_OK;
        size_t es = pt_elsize(out);
        int64_t idx[PETREL_MAX_RANK] = {0};
        uint8_t *o = out->data;
        do {
            int64_t diff = idx[x->rank - 1] - idx[x->rank - 2]; /* column - row */
            if (lower ? diff <= k : diff >= k)
                nu_copy_elem(o, out->dtype, pt_at(x, idx), x->dtype);
            else
                pt_store_i64(o, out->dtype, 0);
            o += es;
        } while (pt_next_index(idx, x->shape, x->rank));
        return PETREL_OK;
    }
    case PETREL_OP_ROLL: {
        int64_t dims[PETREL_MAX_RANK * 2], shifts[PETREL_MAX_RANK] = {0};
        int cs = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
        int cd = pk_ints(ex, n, 2, dims, PETREL_MAX_RANK * 2);
        if (cd == 0) {
            /* roll the flattened tensor, then restore the shape */
            if (cs != 1) return pk_fail(ex, PETREL_ERR_SHAPE, "roll without dims takes one shift");
            int64_t numel = pt_numel(x);
            PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
            if (numel == 0) return PETREL_OK;
            int64_t s = ((list[0] % numel) + numel) % numel, i = 0;
            size_t es = pt_elsize(out);
            int64_t idx[PETREL_MAX_RANK] = {0};
            do {
                nu_copy_elem(out->data + ((i + s) % numel) * (int64_t)es, out->dtype,
                             pt_at(x, idx), x->dtype);
                i++;
            } while (pt_next_index(idx, x->shape, x->rank));
            return PETREL_OK;
        }
        if (cs != cd) return pk_fail(ex, PETREL_ERR_SHAPE, "roll: %d shifts for %d dims", cs, cd);
        for (int i = 0; i < cd; i++) {
            int d;
            NU_WRAP_DIM(ex, d, dims[i], x->rank);
            shifts[d] += list[i]; /* repeated dims roll twice */
        }
        return shape_permute_elems(ex, n, x, shape_map_roll, shifts);
    }
    case PETREL_OP_FLIP: {
        int64_t flag[PETREL_MAX_RANK] = {0};
        int c = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
        for (int i = 0; i < c; i++) {
            int d;
            NU_WRAP_DIM(ex, d, list[i], x->rank);
            if (flag[d]) return pk_fail(ex, PETREL_ERR_SHAPE, "flip repeats dim %d", d);
            flag[d] = 1;
        }
        return shape_permute_elems(ex, n, x, shape_map_flip, flag);
    }
    case PETREL_OP_DIFF:
        return shape_diff(ex, n, x);
    case PETREL_OP_CONSTANT_PAD_ND: {
        bool is_int = pk_scalar_is_int(ex, n, 2);
        return shape_pad(ex, n, x, PAD_CONSTANT, is_int, pk_int(ex, n, 2), pk_float(ex, n, 2));
    }
    case PETREL_OP_PAD: {
        const char *mode = pk_str(ex, n, 2);
        shape_pad_mode m;
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
        return shape_pad(ex, n, x, m, false, 0, v);
    }
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a shape op", (int)n->op);
    }
}
