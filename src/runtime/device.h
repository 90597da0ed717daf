/*
** device.h -- what the executor needs from an accelerator backend, as a
** table of functions.  The executor runs every node on the CPU backend
** unless the graph placed it on a device (pt_node.device); a device backend
** provides its kernels, memory, copies across the host boundary and graph
** capture.  The CUDA backend implements it (backends/cuda/rt/device.c); a
** build without CUDA has none (pt_device_get returns NULL).
*/
#ifndef PETREL_DEVICE_H
#define PETREL_DEVICE_H

#include "kernel.h"

typedef struct pt_device_ops {
    const char *name;
    /* Does the device run this node (the partitioner's question)? */
    bool (*supports)(const pt_graph *g, const pt_node *n, const char **why);
    /* Per-executor context (stream, library handles, scratch). */
    petrel_status (*create)(void **ctx, pt_err *err);
    void (*destroy)(void *ctx);
    /* Kernel for an op; NULL when the backend has none. */
    pt_kernel_fn (*kernel)(pt_op op);
    /* Device memory (64-byte aligned). free takes what alloc returned. */
    petrel_status (*alloc)(void *ctx, size_t n, void **p, pt_err *err);
    void (*free)(void *p);
    /* Stream-ordered host->device copy (the host bytes must stay valid
     * until the next sync) and synchronous device->host copy. */
    petrel_status (*upload)(void *ctx, void *dst, const void *src, size_t n, pt_err *err);
    petrel_status (*download)(void *ctx, void *dst, const void *src, size_t n, pt_err *err);
    /* Strided, converting copy between device tensors. */
    petrel_status (*copy_into)(pt_exec *ex, const pt_tensor *dst, const pt_tensor *src);
    /* Around each node: reset scratch; afterwards check for launch errors.
     * node_end returns PETREL_ERR_NOMEM with *retry set when the node ran
     * out of device scratch (grown now, so a retry will fit). */
    void (*node_begin)(void *ctx);
    petrel_status (*node_end)(void *ctx, bool *retry, pt_err *err);
    petrel_status (*sync)(void *ctx, pt_err *err);
    /* Whole-run graphs: capture the launches of one run, replay them
     * (NULL when the device has none). */
    petrel_status (*capture_begin)(void *ctx, pt_err *err);
    petrel_status (*capture_end)(void *ctx, void **graph, pt_err *err); /* *graph NULL: not capturable */
    petrel_status (*replay)(void *ctx, void *graph, pt_err *err);
    void (*graph_free)(void *graph);
    /* The range of positions a run whose last position is `last` (-1:
     * unknown) falls in, as the bound its kernels may assume: positions
     * below it, 0 for none (NULL: the device has no ranges).  The executor
     * keeps a captured run per range and gives kernels the bound
     * (pt_exec.pos_bound). */
    int64_t (*pos_bound)(int64_t last);
    /* Profiling marks: marks_init makes n marks (n = 0 frees them); mark i
     * records when the device reaches this point of its work; elapsed
     * gives the milliseconds from mark a to mark b once synchronized. */
    petrel_status (*marks_init)(void *ctx, int32_t n, pt_err *err);
    petrel_status (*mark)(void *ctx, int32_t i, pt_err *err);
    petrel_status (*elapsed)(void *ctx, int32_t a, int32_t b, double *ms, pt_err *err);
    /* Index of the largest element of a 1-D float device tensor (lowest
     * index on ties, NaN ignored, -1 when all are NaN), synchronously;
     * PETREL_ERR_UNSUPPORTED for a dtype it does not read. */
    petrel_status (*argmax)(void *ctx, const pt_tensor *row, int64_t *index, pt_err *err);
    /* The argmax above without waiting, for pt_exec_feed_argmax: the
     * index goes to result slot `slot` (< PETREL_FEED_MAX) and, stream
     * ordered before anything enqueued after, into the integer of dtype
     * next_dt at `next` (device memory) and the integer at `step` (NULL:
     * none) grows by one.  feed_result waits for slot's index.  NULL when
     * the device has none (the executor then feeds from the host). */
    petrel_status (*argmax_feed)(void *ctx, const pt_tensor *row, void *next, petrel_dtype next_dt, void *step,
                                 petrel_dtype step_dt, int32_t slot, pt_err *err);
    petrel_status (*feed_result)(void *ctx, int32_t slot, int64_t *index, pt_err *err);
    /* pt_topk_row over a 1-D float device tensor, synchronously;
     * PETREL_ERR_UNSUPPORTED for what it does not take (the executor then
     * reads the row). */
    petrel_status (*topk)(void *ctx, const pt_tensor *row, int32_t k, float temperature, int32_t *ids,
                          float *values, int32_t *n, pt_err *err);
} pt_device_ops;

/* The backend of device `dev` (PT_DEV_CUDA), or NULL when not built in. */
PT_HIDDEN const pt_device_ops *pt_device_get(int dev);

/* Tests: stand a host-memory "loopback" device in for CUDA (loopback.c),
 * so placement, transfers and device state are exercised without a GPU. */
PT_HIDDEN void pt_device_use_loopback(void);

#endif /* PETREL_DEVICE_H */
