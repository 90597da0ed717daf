/*
** view.c -- CPU kernels for the view ops: view / _unsafe_view / reshape,
** permute, transpose, t, unsqueeze, squeeze, expand, slice, select,
** narrow, alias / detach / dropout (eval), flatten, unflatten, as_strided,
** contiguous, view.dtype and the splitting ops (split, split_with_sizes,
** unbind, chunk).  Part of the CPU backend.
**
** Results share their input's storage (pk_out_view), because later
** in-place ops may write through a view and must be seen by the base, as in
** torch.  Only a reshape the strides cannot express, and contiguous() of a
** strided tensor, make a copy.
*/
#include "nn_util.h"

/* Output k as a view of x with the given geometry, starting at `data`. */
static petrel_status view_emit(pt_exec *ex, const pt_node *n, int k, const pt_tensor *x, int rank,
                               const int64_t *shape, const int64_t *stride, uint8_t *data) {
    if (!nu_out_used(n, k)) return PETREL_OK;
    return pk_out_view(ex, n, k, x, x->dtype, rank, shape, stride, data);
}

/* Output 0 aliasing all of x. */
static petrel_status view_alias(pt_exec *ex, const pt_node *n, const pt_tensor *x) {
    return view_emit(ex, n, 0, x, x->rank, x->shape, x->stride, x->data);
}

/* ATen's computeStride: strides that let x be viewed with `shape`, or
 * false when the reshape would need a copy.  Dims of x that are laid out
 * contiguously relative to each other form chunks; each chunk must be
 * covered exactly by a run of new dims. */
static bool view_compute_stride(const pt_tensor *x, int nr, const int64_t *shape,
                                int64_t *stride) {
    int orank = x->rank;
    if (orank == 0) {
        for (int i = 0; i < nr; i++) stride[i] = 1;
        return true;
    }
    int64_t numel = pt_numel(x);
    if (numel == 0) {
        bool same = nr == orank;
        for (int i = 0; same && i < nr; i++) same = shape[i] == x->shape[i];
        if (same) {
            for (int i = 0; i < nr; i++) stride[i] = x->stride[i];
        } else {
            nu_contig_strides(nr, shape, stride);
        }
        return true;
    }
    int view_d = nr - 1;
    int64_t chunk_base_stride = x->stride[orank - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int td = orank - 1; td >= 0; td--) {
        tensor_numel *= x->shape[td];
        if (td == 0 ||
            (x->shape[td - 1] != 1 && x->stride[td - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (td > 0) {
                chunk_base_stride = x->stride[td - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

/* Output 0 = x reshaped to (nr, shape): a view when the strides allow,
 * otherwise a fresh contiguous copy.  One -1 in shape is inferred. */
static petrel_status view_reshape(pt_exec *ex, const pt_node *n, const pt_tensor *x, int nr,
                                  const int64_t *shape_in) {
    if (nr > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_SHAPE, "rank %d too large", nr);
    int64_t shape[PETREL_MAX_RANK], stride[PETREL_MAX_RANK];
    int infer = -1;
    int64_t known = 1, numel = pt_numel(x);
    for (int i = 0; i < nr; i++) {
        shape[i] = shape_in[i];
        if (shape[i] == -1) {
            if (infer >= 0) return pk_fail(ex, PETREL_ERR_SHAPE, "only one dim can be -1");
            infer = i;
        } else if (shape[i] < 0) {
            return pk_fail(ex, PETREL_ERR_SHAPE, "invalid size %lld", (long long)shape[i]);
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return pk_fail(ex, PETREL_ERR_SHAPE,
                           "cannot infer the -1 of a reshape of %lld elements", (long long)numel);
        shape[infer] = numel / known;
    } else if (known != numel) {
        return pk_fail(ex, PETREL_ERR_SHAPE, "reshape of %lld elements to a shape of %lld",
                       (long long)numel, (long long)known);
    }
    if (view_compute_stride(x, nr, shape, stride))
        return view_emit(ex, n, 0, x, nr, shape, stride, x->data);
    /* not expressible as a view: copy x (in its own shape) into a dense output */
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, nr, shape, &out));
    pt_tensor dst = *out;
    dst.rank = x->rank;
    for (int i = 0; i < x->rank; i++) dst.shape[i] = x->shape[i];
    nu_contig_strides(x->rank, x->shape, dst.stride);
    return pk_copy_into(ex, &dst, x);
}

/* Geometry of x narrowed along dim d to elements start, start+step, ...
 * (len of them). */
static void view_narrow(const pt_tensor *x, int d, int64_t start, int64_t len, int64_t step,
                        int64_t *shape, int64_t *stride, uint8_t **data) {
    for (int i = 0; i < x->rank; i++) shape[i] = x->shape[i], stride[i] = x->stride[i];
    shape[d] = len;
    stride[d] = x->stride[d] * step;
    *data = x->data + (len > 0 ? start * x->stride[d] * (int64_t)pt_elsize(x) : 0);
}

/* Geometry of x with dim d removed at index i. */
static void view_select(const pt_tensor *x, int d, int64_t i, int64_t *shape, int64_t *stride,
                        uint8_t **data) {
    int r = 0;
    for (int j = 0; j < x->rank; j++) {
        if (j == d) continue;
        shape[r] = x->shape[j], stride[r] = x->stride[j];
        r++;
    }
    *data = x->data + i * x->stride[d] * (int64_t)pt_elsize(x);
}

/* Outputs 0..count-1: consecutive pieces of x along dim d with the given
 * sizes (which must add up to the dim's size). */
static petrel_status view_split(pt_exec *ex, const pt_node *n, const pt_tensor *x, int d,
                                int count, const int64_t *sizes) {
    if (count != n->nout)
        return pk_fail(ex, PETREL_ERR_SHAPE, "split makes %d pieces but the node has %d outputs",
                       count, n->nout);
    int64_t start = 0;
    for (int k = 0; k < count; k++) {
        if (sizes[k] < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "negative split size");
        start += sizes[k];
    }
    if (start != x->shape[d])
        return pk_fail(ex, PETREL_ERR_SHAPE, "split sizes add up to %lld, dim has %lld",
                       (long long)start, (long long)x->shape[d]);
    start = 0;
    for (int k = 0; k < count; k++) {
        int64_t shape[PETREL_MAX_RANK], stride[PETREL_MAX_RANK];
        uint8_t *data;
        view_narrow(x, d, start, sizes[k], 1, shape, stride, &data);
        PT_TRY(view_emit(ex, n, k, x, x->rank, shape, stride, data));
        start += sizes[k];
    }
    return PETREL_OK;
}

/* split.Tensor / chunk piece sizes along a dim of `size`: pieces of
 * `piece` with a smaller last one.  At most `max` sizes are written; the
 * return value is min(count, max). */
static int view_split_sizes(int64_t size, int64_t piece, int64_t *sizes, int max) {
    int64_t count = piece > 0 ? (size + piece - 1) / piece : 1;
    if (count < 1) count = 1;
    if (count > max) count = max;
    for (int64_t k = 0; k < count; k++) {
        int64_t rest = size - k * piece;
        sizes[k] = rest < piece ? rest : piece;
    }
    return (int)count;
}

/* squeeze: drop the listed dims (all when dims == NULL) of size 1. */
static petrel_status view_squeeze(pt_exec *ex, const pt_node *n, const pt_tensor *x,
                                  const bool *drop) {
    int64_t shape[PETREL_MAX_RANK], stride[PETREL_MAX_RANK];
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
        if (x->shape[i] == 1 && (!drop || drop[i])) continue;
        shape[r] = x->shape[i], stride[r] = x->stride[i];
        r++;
    }
    return view_emit(ex, n, 0, x, r, shape, stride, x->data);
}

/* torch's slice bounds: None -> ends, negative wraps once, clamp to
 * [0, size], empty when end < start. */
static void view_slice_bounds(pt_exec *ex, const pt_node *n, int a_start, int a_end, int64_t size,
                              int64_t *start, int64_t *end) {
    int64_t s = pk_is_none(ex, n, a_start) ? 0 : pk_int(ex, n, a_start);
    int64_t e = pk_is_none(ex, n, a_end) ? size : pk_int(ex, n, a_end);
    if (s < 0) s += size;
    if (e < 0) e += size;
    if (s < 0) s = 0;
    if (s > size) s = size;
    if (e < s) e = s;
    if (e > size) e = size;
    *start = s, *end = e;
}

/*
** Kernel family "view": every op of the views section of ops.def.  Each
** produces views of argument 0 (one output, or one per piece for the
** splitting ops); failures are shape errors with a message.
*/
petrel_status cpu_k_view(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    if (!x) return pk_fail(ex, PETREL_ERR_SHAPE, "view of None");
    int64_t shape[PETREL_MAX_RANK], stride[PETREL_MAX_RANK];
    int64_t list[PETREL_MAX_RANK * 2];
    uint8_t *data;
    int d;
    switch (n->op) {
    case PETREL_OP_VIEW:
    case PETREL_OP_UNSAFE_VIEW:
    case PETREL_OP_RESHAPE: {
        int c = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
        return view_reshape(ex, n, x, c, list);
    }
    case PETREL_OP_PERMUTE: {
        int c = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
        if (c != x->rank)
            return pk_fail(ex, PETREL_ERR_SHAPE, "permute of rank %d with %d dims", x->rank, c);
        bool seen[PETREL_MAX_RANK] = {false};
        for (int i = 0; i < c; i++) {
            NU_WRAP_DIM(ex, d, list[i], x->rank);
            if (seen[d]) return pk_fail(ex, PETREL_ERR_SHAPE, "permute repeats dim %d", d);
            seen[d] = true;
            shape[i] = x->shape[d], stride[i] = x->stride[d];
        }
        return view_emit(ex, n, 0, x, c, shape, stride, x->data);
    }
    case PETREL_OP_TRANSPOSE:
    case PETREL_OP_T: {
        int d0, d1;
        if (n->op == PETREL_OP_T) {
            if (x->rank > 2) return pk_fail(ex, PETREL_ERR_SHAPE, "t() of a %d-D tensor", x->rank);
            d0 = 0, d1 = x->rank == 2 ? 1 : 0;
        } else {
            NU_WRAP_DIM(ex, d0, pk_int(ex, n, 1), x->rank);
            NU_WRAP_DIM(ex, d1, pk_int(ex, n, 2), x->rank);
        }
        if (x->rank == 0) return view_alias(ex, n, x);
        for (int i = 0; i < x->rank; i++) shape[i] = x->shape[i], stride[i] = x->stride[i];
        shape[d0] = x->shape[d1], stride[d0] = x->stride[d1];
        shape[d1] = x->shape[d0], stride[d1] = x->stride[d0];
        return view_emit(ex, n, 0, x, x->rank, shape, stride, x->data);
    }
    case PETREL_OP_UNSQUEEZE: {
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), x->rank + 1);
        if (x->rank + 1 > PETREL_MAX_RANK) return pk_fail(ex, PETREL_ERR_SHAPE, "rank too large");
        for (int i = 0, j = 0; i <= x->rank; i++) {
            if (i == d) {
                shape[i] = 1;
                stride[i] = d < x->rank ? x->shape[d] * x->stride[d] : 1;
            } else {
                shape[i] = x->shape[j], stride[i] = x->stride[j];
                j++;
            }
        }
        return view_emit(ex, n, 0, x, x->rank + 1, shape, stride, x->data);
    }
    case PETREL_OP_SQUEEZE:
        return view_squeeze(ex, n, x, NULL);
    case PETREL_OP_SQUEEZE_DIM:
    case PETREL_OP_SQUEEZE_DIMS: {
        bool drop[PETREL_MAX_RANK] = {false};
        int c = 1;
        if (n->op == PETREL_OP_SQUEEZE_DIM)
            list[0] = pk_int(ex, n, 1);
        else
            c = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
        for (int i = 0; i < c; i++) {
            NU_WRAP_DIM(ex, d, list[i], x->rank);
            drop[d] = true;
        }
        return view_squeeze(ex, n, x, drop);
    }
    case PETREL_OP_EXPAND:
    case PETREL_OP_EXPAND_AS: {
        int c;
        if (n->op == PETREL_OP_EXPAND) {
            c = pk_ints(ex, n, 1, list, PETREL_MAX_RANK * 2);
        } else {
            const pt_tensor *o = pk_tensor(ex, n, 1);
            if (!o) return pk_fail(ex, PETREL_ERR_SHAPE, "expand_as of None");
            c = o->rank;
            for (int i = 0; i < c; i++) list[i] = o->shape[i];
        }
        if (c < x->rank || c > PETREL_MAX_RANK)
            return pk_fail(ex, PETREL_ERR_SHAPE, "expand of rank %d to %d dims", x->rank, c);
        int off = c - x->rank;
        for (int i = 0; i < c; i++) {
            int64_t want = list[i];
            if (i < off) {
                if (want < 0) return pk_fail(ex, PETREL_ERR_SHAPE, "-1 for a new leading dim");
                shape[i] = want, stride[i] = 0;
                continue;
            }
            int64_t have = x->shape[i - off];
            if (want == -1 || want == have) {
                shape[i] = have, stride[i] = x->stride[i - off];
            } else if (have == 1 && want >= 0) {
                shape[i] = want, stride[i] = 0;
            } else {
                return pk_fail(ex, PETREL_ERR_SHAPE, "cannot expand size %lld to %lld at dim %d",
                               (long long)have, (long long)want, i);
            }
        }
        return view_emit(ex, n, 0, x, c, shape, stride, x->data);
    }
    case PETREL_OP_SLICE: {
        if (x->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "slice of a 0-d tensor");
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), x->rank);
        int64_t step = pk_int(ex, n, 4), start, end;
        if (step < 1) return pk_fail(ex, PETREL_ERR_SHAPE, "slice step must be positive");
        view_slice_bounds(ex, n, 2, 3, x->shape[d], &start, &end);
        view_narrow(x, d, start, (end - start + step - 1) / step, step, shape, stride, &data);
        return view_emit(ex, n, 0, x, x->rank, shape, stride, data);
    }
    case PETREL_OP_SELECT: {
        if (x->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "select of a 0-d tensor");
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), x->rank);
        int64_t i = pk_int(ex, n, 2);
        if (i < 0) i += x->shape[d];
        if (i < 0 || i >= x->shape[d])
            return pk_fail(ex, PETREL_ERR_RUNTIME, "select index %lld out of range for size %lld",
                           (long long)pk_int(ex, n, 2), (long long)x->shape[d]);
        view_select(x, d, i, shape, stride, &data);
        return view_emit(ex, n, 0, x, x->rank - 1, shape, stride, data);
    }
    case PETREL_OP_NARROW: {
        if (x->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "narrow of a 0-d tensor");
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), x->rank);
        int64_t start = pk_int(ex, n, 2), len = pk_int(ex, n, 3);
        if (start < 0) start += x->shape[d];
        if (start < 0 || len < 0 || start > x->shape[d] || start + len > x->shape[d])
            return pk_fail(ex, PETREL_ERR_RUNTIME, "narrow(%lld, %lld) out of range for size %lld",
                           (long long)pk_int(ex, n, 2), (long long)len, (long long)x->shape[d]);
        view_narrow(x, d, start, len, 1, shape, stride, &data);
        return view_emit(ex, n, 0, x, x->rank, shape, stride, data);
    }
    case PETREL_OP_ALIAS:
    case PETREL_OP_DETACH:
    case PETREL_OP_DETACH_:
        return view_alias(ex, n, x);
    case PETREL_OP_DROPOUT:
    case PETREL_OP_DROPOUT_:
        if (pk_bool(ex, n, 2) && pk_float(ex, n, 1) > 0.0)
            return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "dropout in training mode is not supported");
        return view_alias(ex, n, x);
    case PETREL_OP_FLATTEN: {
        if (x->rank == 0) {
            int64_t one = 1;
            return view_reshape(ex, n, x, 1, &one);
        }
        int s, e;
        NU_WRAP_DIM(ex, s, pk_int(ex, n, 1), x->rank);
        NU_WRAP_DIM(ex, e, pk_int(ex, n, 2), x->rank);
        if (s > e) return pk_fail(ex, PETREL_ERR_SHAPE, "flatten start_dim after end_dim");
        int r = 0;
        for (int i = 0; i < s; i++) list[r++] = x->shape[i];
        list[r++] = nu_prod(x->shape + s, e - s + 1);
        for (int i = e + 1; i < x->rank; i++) list[r++] = x->shape[i];
        return view_reshape(ex, n, x, r, list);
    }
    case PETREL_OP_UNFLATTEN: {
        if (x->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "unflatten of a 0-d tensor");
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), x->rank);
        int64_t sizes[PETREL_MAX_RANK * 2];
        int c = pk_ints(ex, n, 2, sizes, PETREL_MAX_RANK * 2);
        if (c < 1 || x->rank - 1 + c > PETREL_MAX_RANK)
            return pk_fail(ex, PETREL_ERR_SHAPE, "unflatten into %d sizes", c);
        int r = 0;
        for (int i = 0; i < d; i++) list[r++] = x->shape[i];
        for (int i = 0; i < c; i++) list[r++] = sizes[i];
        for (int i = d + 1; i < x->rank; i++) list[r++] = x->shape[i];
        /* the sizes must cover dim d exactly (reshape alone would also
         * accept a split that borrows from neighbouring dims) */
        int64_t known = 1;
        bool infer = false;
        for (int i = 0; i < c; i++) {
            if (sizes[i] == -1) infer = true;
            else known *= sizes[i];
        }
        if (infer ? (known == 0 || x->shape[d] % known != 0) : known != x->shape[d])
            return pk_fail(ex, PETREL_ERR_SHAPE, "unflatten sizes do not multiply to %lld",
                           (long long)x->shape[d]);
        if (infer)
            for (int i = 0; i < c; i++)
                if (list[d + i] == -1) list[d + i] = x->shape[d] / known;
        return view_reshape(ex, n, x, r, list);
    }
    case PETREL_OP_AS_STRIDED: {
        int c = pk_ints(ex, n, 1, shape, PETREL_MAX_RANK);
        int cs = pk_ints(ex, n, 2, stride, PETREL_MAX_RANK);
        if (c != cs) return pk_fail(ex, PETREL_ERR_SHAPE, "as_strided size/stride lengths differ");
        if (!x->storage)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "as_strided of a tensor without storage");
        int64_t es = (int64_t)pt_elsize(x);
        int64_t offset = pk_is_none(ex, n, 3) ? (int64_t)(x->data - x->storage->data) / es
                                              : pk_int(ex, n, 3);
        int64_t last = offset, numel = nu_prod(shape, c);
        for (int i = 0; i < c; i++) {
            if (shape[i] < 0 || stride[i] < 0)
                return pk_fail(ex, PETREL_ERR_SHAPE, "as_strided with a negative size or stride");
            if (numel > 0) last += (shape[i] - 1) * stride[i];
        }
        if (offset < 0 || (numel > 0 && (last + 1) * es > x->storage->nbytes))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "as_strided reaches outside the storage");
        return view_emit(ex, n, 0, x, c, shape, stride, x->storage->data + offset * es);
    }
    case PETREL_OP_CONTIGUOUS: {
        if (pt_is_contiguous(x)) return view_alias(ex, n, x);
        pt_tensor *out;
        PT_TRY(pk_out_alloc(ex, n, 0, x->rank, x->shape, &out));
        return pk_copy_into(ex, out, x);
    }
    case PETREL_OP_VIEW_AS_DTYPE: {
        int dt = pk_dtype(ex, n, 1);
        if (!pt_dtype_valid(dt)) return pk_fail(ex, PETREL_ERR_SHAPE, "view.dtype without a dtype");
        if (petrel_dtype_size((petrel_dtype)dt) != pt_elsize(x))
            return pk_fail(ex, PETREL_ERR_UNSUPPORTED,
                           "view.dtype between element sizes %zu and %zu is not supported",
                           pt_elsize(x), petrel_dtype_size((petrel_dtype)dt));
        if (!nu_out_used(n, 0)) return PETREL_OK;
        return pk_out_view(ex, n, 0, x, (petrel_dtype)dt, x->rank, x->shape, x->stride, x->data);
    }
    case PETREL_OP_SPLIT:
    case PETREL_OP_CHUNK:
    case PETREL_OP_SPLIT_WITH_SIZES:
    case PETREL_OP_UNBIND: {
        if (x->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "splitting a 0-d tensor");
        if (n->op == PETREL_OP_UNBIND) {
            NU_WRAP_DIM(ex, d, pk_int(ex, n, 1), x->rank);
            if (x->shape[d] != n->nout)
                return pk_fail(ex, PETREL_ERR_SHAPE, "unbind of size %lld into %d outputs",
                               (long long)x->shape[d], n->nout);
            for (int k = 0; k < n->nout; k++) {
                view_select(x, d, k, shape, stride, &data);
                PT_TRY(view_emit(ex, n, k, x, x->rank - 1, shape, stride, data));
            }
            return PETREL_OK;
        }
        /* room for one piece more than the node has outputs, so a count
         * mismatch is seen rather than truncated */
        int maxp = n->nout + 1;
        int64_t *sizes = (int64_t *)nu_scratch(ex, maxp, sizeof(int64_t));
        if (!sizes) return NU_NOMEM(ex);
        NU_WRAP_DIM(ex, d, pk_int(ex, n, 2), x->rank);
        int64_t size = x->shape[d];
        int c;
        if (n->op == PETREL_OP_SPLIT_WITH_SIZES) {
            c = pk_ints(ex, n, 1, sizes, maxp);
        } else if (n->op == PETREL_OP_SPLIT) {
            int64_t piece = pk_int(ex, n, 1);
            if (piece < 0 || (piece == 0 && size != 0))
                return pk_fail(ex, PETREL_ERR_SHAPE, "split_size must be positive");
            c = view_split_sizes(size, piece, sizes, maxp);
        } else {
            int64_t chunks = pk_int(ex, n, 1);
            if (chunks < 1) return pk_fail(ex, PETREL_ERR_SHAPE, "chunk count must be positive");
            if (size == 0) {
                /* torch returns `chunks` empty pieces for an empty dim */
                c = chunks > maxp ? maxp : (int)chunks;
                for (int k = 0; k < c; k++) sizes[k] = 0;
            } else {
                c = view_split_sizes(size, (size + chunks - 1) / chunks, sizes, maxp);
            }
        }
        return view_split(ex, n, x, d, c, sizes);
    }
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a view op", (int)n->op);
    }
}
