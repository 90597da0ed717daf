/*
** nn_util.h -- small helpers shared by the CPU reference kernels for
** linear algebra, convolution, pooling, normalization, attention, views,
** shape ops and indexing (matmul.c, conv.c, pool.c, norm.c, sdpa.c, view.c,
** shape.c, index.c).  Everything is static inline so each kernel file stays
** self-contained; nothing here allocates except through pk_scratch.
*/
#ifndef PETREL_CPU_NN_UTIL_H
#define PETREL_CPU_NN_UTIL_H

#include <string.h>

#include <math.h>

#include "../cpu.h"

/* Product of n sizes (1 for n == 0). */
static inline int64_t nu_prod(const int64_t *s, int n) {
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= s[i];
    return p;
}

/* Row-major strides (in elements) of a dense tensor of `shape`. */
static inline void nu_contig_strides(int rank, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

/* Copy one element, converting like torch's copy_ when the dtypes differ.
 * Same-dtype copies move bytes, so they are exact for every dtype. */
static inline void nu_copy_elem(void *dst, petrel_dtype dd, const void *src, petrel_dtype sd) {
    if (dd == sd)
        memcpy(dst, src, petrel_dtype_size(dd));
    else if (pt_dtype_is_float(sd))
        pt_store_f64(dst, dd, pt_load_f64(src, sd));
    else
        pt_store_i64(dst, dd, pt_load_i64(src, sd));
}

/* Scratch that is never a zero-byte request (an empty tensor still gets a
 * valid pointer, so callers need no special case). */
static inline void *nu_scratch(pt_exec *ex, int64_t count, size_t elsize) {
    if (count < 1) count = 1;
    return pk_scratch(ex, (size_t)count * elsize);
}

/* n contiguous elements of dtype dt at p as doubles (pt_load_f64's values). */
static inline void nu_widen_f64(const uint8_t *p, petrel_dtype dt, int64_t n, double *dst) {
    if (dt == PETREL_DTYPE_F32) {
        const float *f = (const float *)p;
        for (int64_t i = 0; i < n; i++) dst[i] = f[i];
    } else if (dt == PETREL_DTYPE_BF16 || dt == PETREL_DTYPE_F16) {
        const uint16_t *h = (const uint16_t *)p;
        bool bf16 = dt == PETREL_DTYPE_BF16;
        for (int64_t i = 0; i < n; i++) dst[i] = pt_half_to_f32(h[i], bf16);
    } else {
        int64_t es = (int64_t)pt_dtype_traits_table[dt].size;
        for (int64_t i = 0; i < n; i++) dst[i] = pt_load_f64(p + i * es, dt);
    }
}

/* Read any strided tensor into a row-major array of doubles in scratch.
 * Returns NULL when scratch is exhausted. */
static inline double *nu_load_f64(pt_exec *ex, const pt_tensor *t) {
    int64_t numel = pt_numel(t);
    double *buf = (double *)nu_scratch(ex, numel, sizeof(double));
    if (!buf || numel == 0) return buf;
    if (pt_is_contiguous(t)) { /* the usual case: no index arithmetic, a loop per dtype */
        nu_widen_f64(t->data, t->dtype, numel, buf);
        return buf;
    }
    int64_t idx[PETREL_MAX_RANK] = {0};
    int64_t i = 0;
    do {
        buf[i++] = pt_load_f64(pt_at(t, idx), t->dtype);
    } while (pt_next_index(idx, t->shape, t->rank));
    return buf;
}

/* Store row-major doubles into a freshly allocated (contiguous) output,
 * rounding once to its dtype. */
static inline void nu_store_f64(const pt_tensor *out, const double *v) {
    int64_t numel = pt_numel(out);
    size_t es = pt_elsize(out);
    for (int64_t i = 0; i < numel; i++) pt_store_f64(out->data + i * (int64_t)es, out->dtype, v[i]);
}

/* pk_ints for an argument describing `want` spatial dims: a single value is
 * broadcast to all of them (torch accepts stride=[2] for a 2-d conv).
 * Returns false when the count fits neither. */
static inline bool nu_ints_n(pt_exec *ex, const pt_node *n, int a, int want, int64_t *out) {
    int64_t tmp[PETREL_MAX_RANK * 2];
    int c = pk_ints(ex, n, a, tmp, PETREL_MAX_RANK * 2);
    if (c == want) {
        for (int i = 0; i < want; i++) out[i] = tmp[i];
        return true;
    }
    if (c == 1) {
        for (int i = 0; i < want; i++) out[i] = tmp[0];
        return true;
    }
    return false;
}

/* Wrap a dim or fail the node with a message naming it. */
#define NU_WRAP_DIM(ex, var, dim, rank)                                                   \
    do {                                                                                  \
        (var) = pt_wrap_dim((dim), (rank));                                               \
        if ((var) < 0)                                                                    \
            return pk_fail((ex), PETREL_ERR_RUNTIME, "dim %lld out of range for rank %d", \
                           (long long)(dim), (int)(rank));                                \
    } while (0)

#define NU_NOMEM(ex) pk_fail((ex), PETREL_ERR_NOMEM, "out of scratch memory")

/* The rows of an MoE expert product (petrel.expert_linear and
 * qexpert_linear) grouped by expert: ids (T) integers, each in [-E, E)
 * (negative ones count from the end, as torch's indexing), sorted stably
 * by counting; expert e's rows are perm[start[e]] .. perm[start[e + 1] - 1]
 * (start has E + 1 entries).  An id outside [-E, E) fails the node with a
 * message naming op, before anything is written. */
static inline petrel_status nu_expert_groups(pt_exec *ex, const char *op, const pt_tensor *ids, int64_t E,
                                             int64_t **perm, int64_t **start) {
    int64_t T = ids->shape[0], es = (int64_t)pt_elsize(ids);
    int64_t *p = (int64_t *)pk_scratch_raw(ex, (size_t)(T ? T : 1) * sizeof *p);
    int64_t *st = (int64_t *)pk_scratch(ex, (size_t)(E + 2) * sizeof *st);
    if (!p || !st) return pk_fail(ex, PETREL_ERR_NOMEM, "%s: out of scratch memory", op);
    for (int64_t t = 0; t < T; t++) {
        int64_t e = pt_load_i64(ids->data + t * ids->stride[0] * es, ids->dtype);
        if (e < -E || e >= E)
            return pk_fail(ex, PETREL_ERR_RUNTIME, "%s: expert id %lld (row %lld) is out of bounds for %lld experts",
                           op, (long long)e, (long long)t, (long long)E);
        st[(e < 0 ? e + E : e) + 2]++;
    }
    for (int64_t e = 0; e < E; e++) st[e + 2] += st[e + 1]; /* st[e + 1]: where e's rows begin */
    for (int64_t t = 0; t < T; t++) {
        int64_t e = pt_load_i64(ids->data + t * ids->stride[0] * es, ids->dtype);
        p[st[(e < 0 ? e + E : e) + 1]++] = t;
    }
    *perm = p;
    *start = st; /* st[e + 1] moved to e's end: st[e] is e's beginning */
    return PETREL_OK;
}

/* Rows perm[0 .. T) of x (any rows, K) copied in that order into dst,
 * dense (T, K) of x's dtype (an expert product's rows in expert order). */
static inline void nu_gather_rows(const pt_tensor *x, const int64_t *perm, int64_t T, uint8_t *dst) {
    int64_t K = x->shape[1], es = (int64_t)pt_elsize(x);
    for (int64_t i = 0; i < T; i++, dst += K * es) {
        const uint8_t *src = x->data + perm[i] * x->stride[0] * es;
        if (x->stride[1] == 1) memcpy(dst, src, (size_t)(K * es));
        else
            for (int64_t k = 0; k < K; k++) memcpy(dst + k * es, src + k * x->stride[1] * es, (size_t)es);
    }
}

/* True when output k of the node is used (tuple outputs may be None). */
static inline bool nu_out_used(const pt_node *n, int k) { return k < n->nout && n->outs[k] >= 0; }

/* One attention row, as torch's math path computes it, in double:
 * scores s[j] = scale * q . k[j] (j < S; the dot product summed in a
 * fixed order of 8 partial sums), minus infinity where causal
 * (j > i) or a bool mask is false, plus a float mask; softmax with the max
 * subtracted; acc = sum_j p[j] * v[j].  A fully masked row gives zeros and
 * a NaN score propagates.  q (E), k (S, E), v (S, Ev), sc (S) scratch, acc
 * (Ev) result.  `m` is the mask broadcast to the full index space (NULL:
 * none); midx is its index with the row's leading positions filled in,
 * the last two (i, j) set here. */
PT_HIDDEN void nu_attend_row(const double *q, const double *k, const double *v, int64_t S, int64_t E, int64_t Ev,
                             double scale, bool causal, int64_t i, const pt_tensor *m, int64_t *midx, double *sc,
                             double *acc);

/* Does the attention mask element at mp (of m, bool when mbool) exclude
 * its column exactly: false, or a float -inf (exp(-inf) = 0, so skipping
 * the column changes nothing)? */
static inline bool nu_mask_drops(const pt_tensor *m, bool mbool, const uint8_t *mp) {
    return mbool ? !*mp : pt_load_f64(mp, m->dtype) == -INFINITY;
}

/* Attention in float (sdpa.c, over cpu/fast): the CPU's attention kernels
 * take it where nu_fa_fits, and their double loops (nu_attend_row) redo a
 * call whose output it leaves non-finite (they skip what a float product
 * cannot: an excluded column's key, a zero weight's value).  Operands are
 * 4-D: q (B, Hq, L, E), keys k (B, Hkv, S, E) and values v (B, Hkv, S, Ev)
 * (query head h reads key/value head h / (Hq / Hkv)); the mask broadcast
 * to (B, Hq, L, S) or NULL; out (B, Hq, L, Ev) dense. */
typedef struct nu_fa {
    uint8_t *work; /* per thread, per bytes apart */
    size_t per;
    bool *bad;     /* per thread: a non-finite output */
    int np;
} nu_fa;
/* Do k and v fit: 4-D, one of f32, bf16, f16, contiguous along E (and
 * cpu_fast_attn_enabled)? */
PT_HIDDEN bool nu_fa_fits(const pt_tensor *k, const pt_tensor *v);
/* Take the float path's scratch for columns [0, used) (before a kernel
 * changes any state). */
PT_HIDDEN petrel_status nu_fa_reserve(pt_exec *ex, int64_t E, int64_t Ev, int64_t used, nu_fa *fa);
/* out = softmax(q k^T scale + mask) v over key columns [0, used) (the
 * columns past them excluded), causal masking j > i; false when an output
 * is not finite (the caller then runs the reference). */
PT_HIDDEN bool nu_fa_run(pt_exec *ex, const nu_fa *fa, const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
                         const pt_tensor *m, bool causal, double scale, int64_t used, const pt_tensor *out);

#endif /* PETREL_CPU_NN_UTIL_H */
