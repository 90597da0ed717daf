/*
** cuda.h -- the CUDA backend (the GPU delegate): what its kernels see.
**
** A CUDA kernel has the CPU kernel's signature, `petrel_status k(pt_exec *ex,
** const pt_node *n)`, and reads its arguments with the same pk_* helpers
** (runtime/kernel.h).  The differences:
**
**  - Tensor arguments are device tensors: `t->data` is a device pointer,
**    `t->storage->device == PT_DEV_CUDA`; shape and strides (in elements)
**    are host values.  The one exception is a Python number passed where
**    the schema says Tensor (a "wrapped number"): pk_tensor returns a 0-d
**    host tensor for it (pcu_is_host_scalar); read it with pt_load_f64 /
**    pt_load_i64 and pass it to the device by value.
**  - pk_out_alloc / pk_out_alloc_dtype return device memory (the node's
**    slot of the planned device arena); pk_out_view works as on the CPU.
**  - pk_scratch is host memory (for small host-side arrays); device scratch
**    comes from pk_dev_scratch, valid until the node ends.
**  - Everything is enqueued on the executor's stream (pcu_stream).  A
**    kernel never synchronizes, never allocates device memory with
**    cudaMalloc, never copies device data to the host: the decode step is
**    captured into a CUDA graph and replayed, so a kernel's host-side work
**    must depend on shapes, scalar arguments and the run's range of
**    positions (pk_pos_bound) only, never on tensor values.
**  - Every CUDA / cuBLAS call is checked: PCU_TRY / PCU_BLAS / PCU_LAUNCHED
**    turn a failure into a status naming the failing call.
**
** Kernels compute in float for f32/f16/bf16 (double for f64) and round once
** to the output dtype, matching torch's "opmath"; the CPU backend is the
** oracle (tests/gpu/run.sh compares them).
**
** Layout: ops/<family>.c holds the host side of a kernel family (argument
** reading, shapes, launch), ops/<family>_k.cu its __global__ kernels behind
** extern "C" launchers declared in ops/<family>_k.h (plain C types only).
** caps/<family>.h lists the ops and dtypes a family supports; that table is
** what the partitioner uses, also in builds without CUDA (caps.c).
*/
#ifndef PETREL_CUDA_H
#define PETREL_CUDA_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../../runtime/kernel.h"

/* Per-executor CUDA state (owned by the executor, see rt/context.c). */
typedef struct pcu_ctx {
    int device;                 /* CUDA device ordinal */
    cudaStream_t stream;        /* everything runs on this stream */
    cublasHandle_t blas;        /* bound to `stream`, workspace set */
    cublasLtHandle_t lt;
    void *blas_ws;              /* cuBLAS(Lt) workspace (fixed: graph-capture safe) */
    size_t blas_ws_bytes;
    uint8_t *scr;               /* device scratch: bump region, reset per node */
    size_t scr_cap, scr_used, scr_need;
    int sm_count;               /* multiprocessors */
    int cc_major, cc_minor;     /* compute capability */
    /* the output argmax: mapped pinned words the kernel writes (the fed
     * results' slots, then the synchronous one's), their device address,
     * its work words (zero between launches), a fed result's event */
    int64_t *arg_host, *arg_hdev;
    void *arg_work;
    cudaEvent_t fed_ev[PETREL_FEED_MAX];
    uint64_t *topk_dev, *topk_host; /* the output top-k: device keys (PCU_TOPK_MERGE work, then
                                       PETREL_TOPK_MAX results), pinned host keys (results) */
    cudaEvent_t *marks;         /* profiling marks (petrel_program_set_profiling) */
    int32_t nmarks;
} pcu_ctx;

/* The CUDA context of the executor running this node. */
PT_HIDDEN pcu_ctx *pk_cuda(pt_exec *ex);
static inline cudaStream_t pcu_stream(pt_exec *ex) { return pk_cuda(ex)->stream; }

/* Device scratch (64-byte aligned) valid until the node ends; NULL when the
 * region is exhausted (the node then fails with a clear message and the
 * region grows before the next call). */
PT_HIDDEN void *pk_dev_scratch(pt_exec *ex, size_t nbytes);
/* This run's range of positions: every position is below it (0: unknown;
 * pcu_pos_bound). */
PT_HIDDEN int64_t pk_pos_bound(pt_exec *ex);

/* A wrapped Python number: a 0-d tensor that lives on the host. */
static inline bool pcu_is_host_scalar(const pt_tensor *t) {
    return t && t->storage && t->storage->device == PT_DEV_CPU;
}

/* Status from a failed CUDA / cuBLAS call, naming it. */
PT_HIDDEN petrel_status pcu_fail_cuda(pt_exec *ex, cudaError_t e, const char *call);
PT_HIDDEN petrel_status pcu_fail_blas(pt_exec *ex, cublasStatus_t s, const char *call);

#define PCU_TRY(ex, call)                                                                          \
    do {                                                                                           \
        cudaError_t pcu_e_ = (call);                                                               \
        if (pcu_e_ != cudaSuccess) return pcu_fail_cuda((ex), pcu_e_, #call);                      \
    } while (0)
#define PCU_BLAS(ex, call)                                                                         \
    do {                                                                                           \
        cublasStatus_t pcu_s_ = (call);                                                            \
        if (pcu_s_ != CUBLAS_STATUS_SUCCESS) return pcu_fail_blas((ex), pcu_s_, #call);            \
    } while (0)
/* After a kernel launch (launchers return cudaGetLastError()). */
#define PCU_LAUNCHED(ex, err, what)                                                                \
    do {                                                                                           \
        cudaError_t pcu_e_ = (err);                                                                \
        if (pcu_e_ != cudaSuccess) return pcu_fail_cuda((ex), pcu_e_, what);                       \
    } while (0)

/* Strided tensor description passed to launchers by value (plain C). */
#define PCU_MAX_RANK 8
/* The executor's ranges of positions (pcu_pos_bound): below this bound,
 * and the rest.  The decode attention runs one query row per warp in the
 * first (sdpa_k.cu, attn_dec_plan). */
#define PCU_SHORT_POSITIONS 512
typedef struct pcu_tdesc {
    void *data;                       /* device pointer to element (0,...,0) */
    int32_t dtype;                    /* petrel_dtype */
    int32_t rank;
    int64_t shape[PCU_MAX_RANK];
    int64_t stride[PCU_MAX_RANK];     /* elements; 0 = broadcast */
} pcu_tdesc;

static inline pcu_tdesc pcu_desc(const pt_tensor *t) {
    pcu_tdesc d;
    d.data = t->data;
    d.dtype = (int32_t)t->dtype;
    d.rank = t->rank;
    for (int i = 0; i < PCU_MAX_RANK; i++) {
        d.shape[i] = i < t->rank ? t->shape[i] : 1;
        d.stride[i] = i < t->rank ? t->stride[i] : 0;
    }
    return d;
}

/* ---- kernel families (ops/<family>.c) ----------------------------------- */

PT_HIDDEN petrel_status cuda_k_binary(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_where(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_unary(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_copy(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_create(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_shape(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_index(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_reduce(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_matmul(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_norm(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_sdpa(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_fused(pt_exec *ex, const pt_node *n);
PT_HIDDEN petrel_status cuda_k_quant(pt_exec *ex, const pt_node *n);

/* Strided, converting device copy dst <- src (same shape, any dtypes, both
 * on the device), as pt_copy_into does on the host.  Used by the executor
 * (in-place results, state updates) and by kernels.  ops/copy.c. */
PT_HIDDEN petrel_status pcu_copy_into(pt_exec *ex, const pt_tensor *dst, const pt_tensor *src);

/* A linear's input x (..., K) as M rows (its leading dims flattened) of
 * row stride *ld: in place when its last dim is contiguous and its rows
 * evenly spaced and 16-byte aligned (what the GEMVs need), else a dense
 * copy in device scratch.  ops/matmul.c. */
PT_HIDDEN petrel_status pcu_linear_rows(pt_exec *ex, const pt_tensor *x, const void **data, int64_t *ld, int64_t *M);

/* The RMSNorm prologue of the fused and quantized linears (ops.def:
 * arguments a .. a + 4 = norm, norm_weight, norm_eps, norm_add_one,
 * norm_dtype), read and checked by pcu_prenorm_of.  The float GEMV
 * (matmul.c) applies it as a scale after its product (no launch); otherwise pcu_prenorm_run normalizes the M rows at *xd with
 * the row-norm kernel into dense device scratch, which *xd / *ld then
 * name.  ops/matmul.c. */
typedef struct pcu_prenorm {
    bool on;            /* the node normalizes x */
    const pt_tensor *w; /* the norm weight (K) or NULL */
    float eps;
    bool add_one;       /* the weight is 1 + w */
    int norm_dtype;     /* petrel.rms_norm's rounding point; -1: none */
} pcu_prenorm;
PT_HIDDEN petrel_status pcu_prenorm_of(pt_exec *ex, const pt_node *n, int a, const pt_tensor *x, pcu_prenorm *pn);
PT_HIDDEN petrel_status pcu_prenorm_run(pt_exec *ex, const pcu_prenorm *pn, const pt_tensor *x, const void **xd, int64_t *ld,
                                        int64_t M);

#endif /* PETREL_CUDA_H */
