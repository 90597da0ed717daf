/*
** kernel.h -- the interface between the runtime's executor and backend
** kernels: runtime tensors (strided views over refcounted storage), the
** kernel signature, and the helpers a kernel uses to read its arguments and
** produce its outputs.  Backends include this; they never see the importer.
**
** A kernel is `petrel_status k(pt_exec *ex, const pt_node *n)`.  Arguments
** arrive normalized against the op's schema in ops.def: n->args[i] is the
** i-th schema argument, defaults filled in, so a kernel reads them by
** position.  Outputs are produced with pk_out_alloc (fresh contiguous
** tensor, dtype taken from the exported meta) or pk_out_view (aliases an
** input's storage), or pk_out_int/float/bool for symbolic scalars.
** Shapes are computed by the kernel; the executor then checks them against
** the shapes recorded at export.
*/
#ifndef PETREL_KERNEL_H
#define PETREL_KERNEL_H

#include <string.h>

#include "../ir/ir.h"
#include "pool.h"

/* Refcounted backing memory of tensors.  `owned` storages are freed when the
 * last reference goes; borrowed ones point into the program mapping. */
typedef struct pt_storage {
    int32_t refs;
    bool owned;
    bool is_static;    /* arena slot or scratch: never freed by refcounting */
    uint8_t device;    /* PT_DEV_*: host memory or device memory */
    bool is_twin;      /* the copy of another storage on the other device */
    bool twin_fresh;   /* `twin` holds the current bytes */
    bool read_only;    /* a program weight: never written, so its twin stays current */
    bool dev_newer;    /* a host storage whose device twin the device wrote (a fed input):
                        * the twin is current, the host bytes are not */
    struct pt_storage *twin; /* the copy on the other device (owned), or the original */
    void *raw;         /* allocation to free (owned only) */
    uint8_t *data;     /* 64-byte aligned start */
    int64_t nbytes;
} pt_storage;

/* A strided view.  `data` points at element (0,...,0); strides are in
 * elements and may be 0 (broadcast) or negative-free (never negative). */
typedef struct pt_tensor {
    petrel_dtype dtype;
    int32_t rank;
    int64_t shape[PETREL_MAX_RANK];
    int64_t stride[PETREL_MAX_RANK];
    uint8_t *data;
    pt_storage *storage;
} pt_tensor;

/* A runtime value. */
typedef struct pt_rvalue {
    pt_vkind kind;
    pt_tensor t;       /* TENSOR */
    int64_t i;         /* INT (and BOOL as 0/1) */
    double f;          /* FLOAT */
} pt_rvalue;

typedef struct pt_exec pt_exec;
typedef petrel_status (*pt_kernel_fn)(pt_exec *ex, const pt_node *n);

/* ---- tensor helpers ----------------------------------------------------- */

static inline int64_t pt_numel(const pt_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->shape[i];
    return n;
}
static inline size_t pt_elsize(const pt_tensor *t) { /* petrel_dtype_size, inline: kernels call it per element */
    return pt_dtype_valid((int)t->dtype) ? pt_dtype_traits_table[t->dtype].size : 0;
}
/* True when strides are row-major contiguous (size-1 dims ignored). */
PT_HIDDEN bool pt_is_contiguous(const pt_tensor *t);
/* Pointer to the element at multi-index idx (idx has t->rank entries). */
static inline uint8_t *pt_at(const pt_tensor *t, const int64_t *idx) {
    int64_t off = 0;
    for (int i = 0; i < t->rank; i++) off += idx[i] * t->stride[i];
    return t->data + off * (int64_t)pt_elsize(t);
}
/* Advance a row-major multi-index over `shape`; false after the last one. */
static inline bool pt_next_index(int64_t *idx, const int64_t *shape, int rank) {
    for (int i = rank - 1; i >= 0; i--) {
        if (++idx[i] < shape[i]) return true;
        idx[i] = 0;
    }
    return false;
}
/* Normalize a possibly negative dim against rank (rank 0 acts as rank 1).
 * Returns -1 when out of range. */
static inline int pt_wrap_dim(int64_t d, int rank) {
    int r = rank > 0 ? rank : 1;
    if (d < 0) d += r;
    return (d < 0 || d >= r) ? -1 : (int)d;
}
/* View `t` broadcast to (rank, shape): returns false when incompatible.
 * Missing leading dims and size-1 dims get stride 0. */
PT_HIDDEN bool pt_broadcast_to(const pt_tensor *t, int rank, const int64_t *shape, pt_tensor *out);
/* Broadcast shape of two shapes; false when incompatible. */
PT_HIDDEN bool pt_broadcast_shape(int ra, const int64_t *a, int rb, const int64_t *b, int *rout,
                                  int64_t *out);
/* Element-by-element copy of src into dst (same shape; dtypes may differ,
 * converted like torch's copy_).  dst and src may not overlap partially. */
PT_HIDDEN void pt_copy_into(const pt_tensor *dst, const pt_tensor *src);
/* Index of the largest element of a 1-D float tensor in host memory:
 * lowest index on ties, NaN ignored, -1 when all are NaN. */
PT_HIDDEN int64_t pt_argmax_row(const pt_tensor *row);
/* The k largest of x / temperature over a 1-D float tensor in host memory
 * (x as float, divided in float), larger first, lower index on ties, NaN
 * never: ids and values of the first *n (n = min(k, numbers in the row)).
 * The order is petrel_program_output_topk's, shared with the devices. */
PT_HIDDEN void pt_topk_row(const pt_tensor *row, int32_t k, float temperature, int32_t *ids, float *values,
                           int32_t *n);
/* The 64-bit key of value v at index i that orders as pt_topk_row does
 * (larger key first); 0 never comes from a number. */
static inline uint64_t pt_topk_key(float v, uint32_t i) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    if (v == 0.0f) b = 0; /* -0 and +0 alike */
    b = (b & 0x80000000u) ? ~b : b | 0x80000000u;
    return (uint64_t)b << 32 | (uint64_t)(0xffffffffu - i);
}
/* The value and index a key stands for. */
static inline void pt_topk_unkey(uint64_t key, int32_t *id, float *v) {
    uint32_t b = (uint32_t)(key >> 32);
    b = (b & 0x80000000u) ? b & 0x7fffffffu : ~b;
    memcpy(v, &b, sizeof b);
    *id = (int32_t)(0xffffffffu - (uint32_t)key);
}

/* ---- argument access (positions are schema positions) ------------------ */

PT_HIDDEN bool pk_is_none(pt_exec *ex, const pt_node *n, int a);
/* Tensor argument; NULL when None. */
PT_HIDDEN const pt_tensor *pk_tensor(pt_exec *ex, const pt_node *n, int a);
/* Tensor list argument: count (<= max) stored in *count; NULL entries for
 * None elements of a Tensor?[] list. */
PT_HIDDEN const pt_tensor **pk_tensors(pt_exec *ex, const pt_node *n, int a, int *count);
PT_HIDDEN int64_t pk_int(pt_exec *ex, const pt_node *n, int a);
/* Int list; returns the count (the schema's fixed length expands a single
 * value, e.g. stride=1 for int[2] gives {1, 1}).  At most PETREL_MAX_RANK*2. */
PT_HIDDEN int pk_ints(pt_exec *ex, const pt_node *n, int a, int64_t *out, int max);
/* Scalar as double (ints and bools convert). */
PT_HIDDEN double pk_float(pt_exec *ex, const pt_node *n, int a);
/* True when a Scalar argument is integral (int or bool, literal or symbolic). */
PT_HIDDEN bool pk_scalar_is_int(pt_exec *ex, const pt_node *n, int a);
PT_HIDDEN bool pk_bool(pt_exec *ex, const pt_node *n, int a);
PT_HIDDEN const char *pk_str(pt_exec *ex, const pt_node *n, int a); /* NULL when None */
/* ScalarType argument; -1 when None. */
PT_HIDDEN int pk_dtype(pt_exec *ex, const pt_node *n, int a);
/* Is tensor argument a (item k of a list) a program constant (a parameter
 * or constant of the export), so no node of this run writes it? */
PT_HIDDEN bool pk_is_const(pt_exec *ex, const pt_node *n, int a, int k);

/* ---- outputs ------------------------------------------------------------ */

/* dtype recorded at export for output k. */
PT_HIDDEN petrel_dtype pk_out_dtype(pt_exec *ex, const pt_node *n, int k);
/* Allocate output k as a fresh contiguous tensor of the given shape with
 * the exported dtype; *out points at it (valid until the node finishes). */
PT_HIDDEN petrel_status pk_out_alloc(pt_exec *ex, const pt_node *n, int k, int rank,
                                     const int64_t *shape, pt_tensor **out);
/* Same with an explicit dtype (used when the meta is not what the kernel
 * produces, e.g. indices of max.dim which are always i64). */
PT_HIDDEN petrel_status pk_out_alloc_dtype(pt_exec *ex, const pt_node *n, int k,
                                           petrel_dtype dt, int rank, const int64_t *shape,
                                           pt_tensor **out);
/* Make output k a view of `base`'s storage with the given geometry;
 * `data` must point inside base's storage. */
PT_HIDDEN petrel_status pk_out_view(pt_exec *ex, const pt_node *n, int k, const pt_tensor *base,
                                    petrel_dtype dt, int rank, const int64_t *shape,
                                    const int64_t *stride, uint8_t *data);
PT_HIDDEN void pk_out_int(pt_exec *ex, const pt_node *n, int k, int64_t v);
PT_HIDDEN void pk_out_float(pt_exec *ex, const pt_node *n, int k, double v);
PT_HIDDEN void pk_out_bool(pt_exec *ex, const pt_node *n, int k, bool v);
/* pt_copy_into for tensors that may live on a device: dst and src on the
 * same side (the node's); fails with a status instead of crashing. */
PT_HIDDEN petrel_status pk_copy_into(pt_exec *ex, const pt_tensor *dst, const pt_tensor *src);
/* Scratch memory valid until the node finishes, zeroed (NULL on failure). */
PT_HIDDEN void *pk_scratch(pt_exec *ex, size_t nbytes);
/* The same, its bytes unspecified: for buffers a kernel writes before it
 * reads them, where zeroing would cost a pass over memory. */
PT_HIDDEN void *pk_scratch_raw(pt_exec *ex, size_t nbytes);
/* fn over items [0, items) on the program's CPU threads (runtime/pool.h):
 * one contiguous range per thread, at least min_items each; returns when
 * all are done.  Each item must be computed whole by the range that holds
 * it (results then do not depend on the thread count), and fn may not
 * call pk_* functions (they are not thread-safe). */
PT_HIDDEN void pk_parallel(pt_exec *ex, int64_t items, int64_t min_items, pt_pool_fn fn, void *ctx);
/* The most parts a pk_parallel loop has (per-part scratch is sized by it). */
PT_HIDDEN int pk_threads(pt_exec *ex);

/* Fail the node with a message; the executor prefixes the node name. */
PT_HIDDEN petrel_status pk_fail(pt_exec *ex, petrel_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* PETREL_KERNEL_H */
