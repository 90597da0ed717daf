/*
** ew_util.h -- small helpers shared by the CPU reference kernels for
** elementwise ops, reductions, copies, factories and scalars (binary.c,
** where.c, unary.c, reduce.c, copy.c, create.c, symbolic.c, noop.c):
** torch's result-type rules, rounding to a compute precision, scalar
** arguments and optional outputs.  Everything is static inline; nothing
** here allocates except through pk_scratch.
*/
#ifndef PETREL_CPU_EW_UTIL_H
#define PETREL_CPU_EW_UTIL_H

#include <math.h>
#include <string.h>

#include "../cpu.h"

/* ---- dtypes and precision ------------------------------------------------ */

static inline bool ew_is_float(petrel_dtype dt) { return pt_dtype_is_float(dt); }

/* The type torch does the arithmetic of a float dtype in ("opmath"):
 * half and bfloat16 compute in float, float and double in themselves. */
static inline petrel_dtype ew_opmath(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F64 ? PETREL_DTYPE_F64 : PETREL_DTYPE_F32;
}

/* Round v to the precision of float dtype dt (identity for f64 and for
 * non-float dtypes).  Used to cast operands to torch's common dtype before
 * computing, e.g. an int64 operand of a float32 op, or a Python scalar 0.1
 * compared against a half tensor (torch compares against half(0.1)). */
static inline double ew_round(double v, petrel_dtype dt) {
    switch (dt) {
    case PETREL_DTYPE_F32: return (double)(float)v;
    case PETREL_DTYPE_F16: return pt_f16_to_f32(pt_f32_to_f16((float)v));
    case PETREL_DTYPE_BF16: return pt_bf16_to_f32(pt_f32_to_bf16((float)v));
    default: return v;
    }
}

/* ---- torch's result_type ------------------------------------------------- */

/* torch.result_type keeps three running promotions: over tensors with
 * dims, over 0-d tensors and over Python scalars ("wrapped numbers").  A
 * lower-priority group only matters when it is of a higher category
 * (bool < integer < float): int8_tensor + 1000 stays int8, int_tensor + 0.5
 * becomes the default float dtype (float32). */
typedef struct ew_rtype {
    int dim, zero, wrapped; /* petrel_dtype, or -1 when the group is empty */
} ew_rtype;

static inline void ew_rt_init(ew_rtype *r) { r->dim = r->zero = r->wrapped = -1; }

static inline int ew_rt_promote(int acc, petrel_dtype dt) {
    return acc < 0 ? (int)dt : (int)pt_promote((petrel_dtype)acc, dt);
}

static inline void ew_rt_tensor(ew_rtype *r, const pt_tensor *t) {
    if (t->rank > 0) r->dim = ew_rt_promote(r->dim, t->dtype);
    else r->zero = ew_rt_promote(r->zero, t->dtype);
}

/* A Python scalar: ints (and bools, which pk_scalar_is_int cannot tell
 * apart) count as int64, floats as the default dtype float32. */
static inline void ew_rt_scalar(ew_rtype *r, bool is_int) {
    r->wrapped = ew_rt_promote(r->wrapped, is_int ? PETREL_DTYPE_I64 : PETREL_DTYPE_F32);
}

/* combine_categories(higher, lower) from c10 (no complex types here). */
static inline int ew_rt_combine(int higher, int lower) {
    if (higher < 0) return lower;
    if (lower < 0) return higher;
    if (ew_is_float((petrel_dtype)higher)) return higher;
    if (higher == PETREL_DTYPE_BOOL || ew_is_float((petrel_dtype)lower))
        return (int)pt_promote((petrel_dtype)higher, (petrel_dtype)lower);
    return higher;
}

static inline petrel_dtype ew_rt_result(const ew_rtype *r) {
    int dt = ew_rt_combine(r->dim, ew_rt_combine(r->zero, r->wrapped));
    return dt < 0 ? PETREL_DTYPE_F32 : (petrel_dtype)dt;
}

/* ---- scalar arguments ---------------------------------------------------- */

/* A Scalar argument as int64: integral scalars exactly (int64 values beyond
 * 2^53 would not survive a trip through double), float ones truncated like
 * torch's Scalar.to<int64_t>(). */
static inline int64_t ew_scalar_i64(pt_exec *ex, const pt_node *n, int a) {
    if (pk_scalar_is_int(ex, n, a)) return pk_int(ex, n, a);
    double v = pk_float(ex, n, a);
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)v;
}

/* ---- outputs ------------------------------------------------------------- */

/* Allocate output k with dtype dt.  When the graph drops that output (its
 * value id is -1, e.g. the unused indices of max.dim) the kernel still
 * needs somewhere to write, so it gets a scratch tensor instead. */
static inline petrel_status ew_out_alloc(pt_exec *ex, const pt_node *n, int k, petrel_dtype dt,
                                         int rank, const int64_t *shape, pt_tensor **out) {
    if (k < n->nout && n->outs[k] >= 0) return pk_out_alloc_dtype(ex, n, k, dt, rank, shape, out);
    pt_tensor *t = (pt_tensor *)pk_scratch(ex, sizeof *t);
    if (!t) return pk_fail(ex, PETREL_ERR_NOMEM, "out of scratch memory");
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    int64_t step = 1;
    for (int i = rank - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = step;
        step *= shape[i] > 1 ? shape[i] : 1;
    }
    /* step >= 1 even for an empty shape, so the pointer is always valid */
    t->data = (uint8_t *)pk_scratch(ex, (size_t)step * petrel_dtype_size(dt));
    if (!t->data) return pk_fail(ex, PETREL_ERR_NOMEM, "out of scratch memory");
    *out = t;
    return PETREL_OK;
}

/* dtype recorded for output k, or `fallback` when the output is dropped. */
static inline petrel_dtype ew_out_dtype(pt_exec *ex, const pt_node *n, int k,
                                        petrel_dtype fallback) {
    return k < n->nout && n->outs[k] >= 0 ? pk_out_dtype(ex, n, k) : fallback;
}

/* The index (its first `lead` dims) of row r of `shape` walked row by
 * row, its last dim a row (the row loops of binary.c and unary.c). */
static inline void ew_row_index(int64_t r, int lead, const int64_t *shape, int64_t *idx) {
    for (int d = lead - 1; d >= 0; d--) idx[d] = r % shape[d], r /= shape[d];
}

/* Pointer to element i of a freshly allocated (contiguous) output. */
static inline uint8_t *ew_elem(const pt_tensor *t, int64_t i) {
    return t->data + i * (int64_t)pt_elsize(t);
}

#define EW_NOMEM(ex) pk_fail((ex), PETREL_ERR_NOMEM, "out of scratch memory")

/* Fill a dense output with one value: fv for float outputs, fv != 0 for
 * bool (so 0.5 is true), iv for integers. */
static inline void ew_fill(pt_tensor *out, double fv, int64_t iv) {
    bool fl = ew_is_float(out->dtype);
    int64_t total = pt_numel(out);
    for (int64_t i = 0; i < total; i++) {
        if (fl) pt_store_f64(ew_elem(out, i), out->dtype, fv);
        else if (out->dtype == PETREL_DTYPE_BOOL) pt_store_i64(ew_elem(out, i), out->dtype, fv != 0);
        else pt_store_i64(ew_elem(out, i), out->dtype, iv);
    }
}

#endif /* PETREL_CPU_EW_UTIL_H */
