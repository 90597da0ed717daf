/*
** device.c -- the CUDA backend behind the executor's device interface
** (runtime/device.h): one stream per executor, cuBLAS bound to it with a
** fixed workspace, a device scratch region for kernels, memory and copies,
** and whole-run CUDA graphs.
*/
#include <stdio.h>
#include <string.h>

#include "../../../runtime/device.h"
#include "../../../runtime/exec.h"
#include "../caps.h"
#include "../cuda.h"
#include "../ops/argmax_k.h"

#define BLAS_WS_BYTES ((size_t)32 << 20)
#define SCRATCH_BYTES ((size_t)64 << 20)

/* ---- kernels: the caps tables name each op's family --------------------- */

static const pt_kernel_fn pcu_kernels[PETREL_OP_COUNT] = {
#define PCU_CAP(id, mask, family) [PETREL_OP_##id] = cuda_k_##family,
#include "../caps/all.h"
#undef PCU_CAP
};

static pt_kernel_fn pcu_kernel(pt_op op) { return op < PETREL_OP_COUNT ? pcu_kernels[op] : NULL; }

/* ---- errors ------------------------------------------------------------- */

static petrel_status cuda_err(pt_err *err, cudaError_t e, const char *call) {
    petrel_status st = e == cudaErrorMemoryAllocation ? PETREL_ERR_NOMEM : PETREL_ERR_DEVICE;
    return pt_fail(err, st, "%s failed: %s (%s)", call, cudaGetErrorString(e), cudaGetErrorName(e));
}

#define TRY(err, call)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) return cuda_err((err), e_, #call);                                  \
    } while (0)

petrel_status pcu_fail_cuda(pt_exec *ex, cudaError_t e, const char *call) { return cuda_err(ex->err, e, call); }

petrel_status pcu_fail_blas(pt_exec *ex, cublasStatus_t s, const char *call) {
    return pk_fail(ex, s == CUBLAS_STATUS_ALLOC_FAILED ? PETREL_ERR_NOMEM : PETREL_ERR_DEVICE, "%s failed: cuBLAS status %d",
                   call, (int)s);
}

/* ---- context ------------------------------------------------------------ */

pcu_ctx *pk_cuda(pt_exec *ex) { return (pcu_ctx *)ex->dctx; }
int64_t pk_pos_bound(pt_exec *ex) { return ex->pos_bound; }

static void marks_free(pcu_ctx *c) {
    for (int32_t i = 0; i < c->nmarks; i++)
        if (c->marks[i]) cudaEventDestroy(c->marks[i]);
    pt_free(c->marks);
    c->marks = NULL;
    c->nmarks = 0;
}

static void pcu_destroy(void *p) {
    pcu_ctx *c = p;
    if (!c) return;
    marks_free(c);
    for (int i = 0; i < PETREL_FEED_MAX; i++)
        if (c->fed_ev[i]) cudaEventDestroy(c->fed_ev[i]);
    if (c->arg_work) cudaFree(c->arg_work);
    if (c->arg_host) cudaFreeHost(c->arg_host);
    if (c->topk_dev) cudaFree(c->topk_dev);
    if (c->topk_host) cudaFreeHost(c->topk_host);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->blas) cublasDestroy(c->blas);
    if (c->blas_ws) cudaFree(c->blas_ws);
    if (c->scr) cudaFree(c->scr);
    if (c->stream) cudaStreamDestroy(c->stream);
    pt_free(c);
}

static petrel_status pcu_create(void **out, pt_err *err) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return pt_fail(err, PETREL_ERR_BACKEND_UNAVAILABLE, "backend 'cuda': no CUDA device (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    }
    pcu_ctx *c = pt_calloc(1, sizeof *c);
    if (!c) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory");
    petrel_status st = PETREL_OK;
#define CTRY(call)                                                                                 \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) { st = cuda_err(err, e_, #call); goto fail; }                       \
    } while (0)
#define BTRY(call)                                                                                 \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            st = pt_fail(err, PETREL_ERR_DEVICE, "%s failed: cuBLAS status %d", #call, (int)s_);  \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
    CTRY(cudaGetDevice(&c->device));
    CTRY(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, c->device));
    CTRY(cudaDeviceGetAttribute(&c->cc_major, cudaDevAttrComputeCapabilityMajor, c->device));
    CTRY(cudaDeviceGetAttribute(&c->cc_minor, cudaDevAttrComputeCapabilityMinor, c->device));
    CTRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CTRY(cudaMalloc(&c->blas_ws, BLAS_WS_BYTES));
    c->blas_ws_bytes = BLAS_WS_BYTES;
    CTRY(cudaMalloc((void **)&c->scr, SCRATCH_BYTES));
    c->scr_cap = SCRATCH_BYTES;
    CTRY(cudaMalloc(&c->arg_work, 16));
    CTRY(cudaMemsetAsync(c->arg_work, 0, 16, c->stream)); /* ordered before every launch */
    CTRY(cudaHostAlloc((void **)&c->arg_host, (PETREL_FEED_MAX + 1) * sizeof *c->arg_host, cudaHostAllocMapped));
    CTRY(cudaHostGetDevicePointer((void **)&c->arg_hdev, c->arg_host, 0));
    for (int i = 0; i < PETREL_FEED_MAX; i++) CTRY(cudaEventCreateWithFlags(&c->fed_ev[i], cudaEventDisableTiming));
    CTRY(cudaMalloc((void **)&c->topk_dev, (PCU_TOPK_MERGE + PETREL_TOPK_MAX) * sizeof *c->topk_dev));
    CTRY(cudaMallocHost((void **)&c->topk_host, PETREL_TOPK_MAX * sizeof *c->topk_host));
    BTRY(cublasCreate(&c->blas));
    BTRY(cublasSetStream(c->blas, c->stream));
    BTRY(cublasSetWorkspace(c->blas, c->blas_ws, c->blas_ws_bytes));
    BTRY(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH)); /* no TF32: fp32 stays fp32 */
    BTRY(cublasLtCreate(&c->lt));
#undef CTRY
#undef BTRY
    *out = c;
    return PETREL_OK;
fail:
    pcu_destroy(c);
    return st;
}

void *pk_dev_scratch(pt_exec *ex, size_t nbytes) {
    pcu_ctx *c = pk_cuda(ex);
    size_t n = (nbytes + 255) & ~(size_t)255;
    if (n == 0) n = 256;
    c->scr_need += n;
    if (c->scr_used + n > c->scr_cap) return NULL;
    void *p = c->scr + c->scr_used;
    c->scr_used += n;
    return p;
}

static void pcu_node_begin(void *p) {
    pcu_ctx *c = p;
    c->scr_used = 0;
    c->scr_need = 0;
}

static petrel_status pcu_node_end(void *p, bool *retry, pt_err *err) {
    pcu_ctx *c = p;
    *retry = false;
    if (c->scr_need > c->scr_cap) {
        /* grow between nodes (never inside a captured run: that run fails
         * and the executor repeats it eagerly) */
        TRY(err, cudaStreamSynchronize(c->stream));
        TRY(err, cudaFree(c->scr));
        c->scr = NULL;
        c->scr_cap = 0;
        size_t cap = c->scr_need * 2;
        TRY(err, cudaMalloc((void **)&c->scr, cap));
        c->scr_cap = cap;
        *retry = true;
        return PETREL_ERR_NOMEM;
    }
    TRY(err, cudaGetLastError());
    return PETREL_OK;
}

/* ---- memory and copies -------------------------------------------------- */

static petrel_status pcu_alloc(void *ctx, size_t n, void **p, pt_err *err) {
    (void)ctx;
    *p = NULL;
    cudaError_t e = cudaMalloc(p, n ? n : 1);
    if (e != cudaSuccess) {
        *p = NULL;
        return pt_fail(err, PETREL_ERR_NOMEM, "out of GPU memory allocating %zu bytes (%s)", n, cudaGetErrorString(e));
    }
    return PETREL_OK;
}

static void pcu_free(void *p) {
    if (p) cudaFree(p);
}

static petrel_status pcu_upload(void *ctx, void *dst, const void *src, size_t n, pt_err *err) {
    pcu_ctx *c = ctx;
    if (n) TRY(err, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream));
    return PETREL_OK;
}

static petrel_status pcu_download(void *ctx, void *dst, const void *src, size_t n, pt_err *err) {
    pcu_ctx *c = ctx;
    if (n) TRY(err, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream));
    TRY(err, cudaStreamSynchronize(c->stream));
    return PETREL_OK;
}

static petrel_status pcu_sync(void *ctx, pt_err *err) {
    pcu_ctx *c = ctx;
    TRY(err, cudaStreamSynchronize(c->stream));
    return PETREL_OK;
}

/* ---- graphs ------------------------------------------------------------- */

typedef struct pcu_graph {
    cudaGraph_t g;
    cudaGraphExec_t x;
} pcu_graph;

static petrel_status pcu_capture_begin(void *ctx, pt_err *err) {
    pcu_ctx *c = ctx;
    TRY(err, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    return PETREL_OK;
}

static petrel_status pcu_capture_end(void *ctx, void **out, pt_err *err) {
    pcu_ctx *c = ctx;
    *out = NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (e != cudaSuccess || !g) {
        cudaGetLastError(); /* an invalidated capture: not capturable, not fatal */
        if (g) cudaGraphDestroy(g);
        return PETREL_OK;
    }
    pcu_graph *pg = pt_calloc(1, sizeof *pg);
    if (!pg) {
        cudaGraphDestroy(g);
        return pt_fail(err, PETREL_ERR_NOMEM, "out of memory");
    }
    pg->g = g;
    e = cudaGraphInstantiate(&pg->x, g, 0);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaGraphDestroy(g);
        pt_free(pg);
        return PETREL_OK;
    }
    *out = pg;
    return PETREL_OK;
}

static petrel_status pcu_replay(void *ctx, void *graph, pt_err *err) {
    pcu_ctx *c = ctx;
    pcu_graph *pg = graph;
    TRY(err, cudaGraphLaunch(pg->x, c->stream));
    return PETREL_OK;
}

static int64_t pcu_pos_bound(int64_t last) { return last >= 0 && last < PCU_SHORT_POSITIONS ? PCU_SHORT_POSITIONS : 0; }

static void pcu_graph_free(void *graph) {
    pcu_graph *pg = graph;
    if (!pg) return;
    cudaGraphExecDestroy(pg->x);
    cudaGraphDestroy(pg->g);
    pt_free(pg);
}

/* ---- profiling marks ---------------------------------------------------- */

static petrel_status pcu_marks_init(void *ctx, int32_t n, pt_err *err) {
    pcu_ctx *c = ctx;
    marks_free(c);
    if (n <= 0) return PETREL_OK;
    c->marks = pt_calloc((size_t)n, sizeof *c->marks);
    if (!c->marks) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory");
    c->nmarks = n;
    for (int32_t i = 0; i < n; i++) TRY(err, cudaEventCreate(&c->marks[i]));
    return PETREL_OK;
}

static petrel_status pcu_mark(void *ctx, int32_t i, pt_err *err) {
    pcu_ctx *c = ctx;
    if (i < 0 || i >= c->nmarks) return pt_fail(err, PETREL_ERR_INVALID_ARG, "profiling mark %d out of range", i);
    TRY(err, cudaEventRecord(c->marks[i], c->stream));
    return PETREL_OK;
}

static petrel_status pcu_elapsed(void *ctx, int32_t a, int32_t b, double *ms, pt_err *err) {
    pcu_ctx *c = ctx;
    if (a < 0 || b < 0 || a >= c->nmarks || b >= c->nmarks)
        return pt_fail(err, PETREL_ERR_INVALID_ARG, "profiling mark out of range");
    float f = 0;
    TRY(err, cudaEventElapsedTime(&f, c->marks[a], c->marks[b]));
    *ms = f;
    return PETREL_OK;
}

/* ---- output argmax ------------------------------------------------------- */

static bool argmax_takes(const pt_tensor *row) {
    return (row->dtype == PETREL_DTYPE_F32 || row->dtype == PETREL_DTYPE_F16 || row->dtype == PETREL_DTYPE_BF16) &&
           row->shape[0] <= 0xffffffffLL;
}

/* The kernel writes the index straight into mapped host memory: no copy
 * follows it on the stream. */
static petrel_status pcu_argmax(void *ctx, const pt_tensor *row, int64_t *index, pt_err *err) {
    pcu_ctx *c = ctx;
    if (!argmax_takes(row)) return PETREL_ERR_UNSUPPORTED;
    pcu_argmax_out o = {.out = c->arg_hdev + PETREL_FEED_MAX, .work = c->arg_work};
    TRY(err, pcu_argmax_launch(c->stream, row->dtype, row->data, row->stride[0], row->shape[0], &o));
    TRY(err, cudaStreamSynchronize(c->stream));
    *index = ((volatile int64_t *)c->arg_host)[PETREL_FEED_MAX];
    return PETREL_OK;
}

static petrel_status pcu_argmax_feed(void *ctx, const pt_tensor *row, void *next, petrel_dtype next_dt, void *step,
                                     petrel_dtype step_dt, int32_t slot, pt_err *err) {
    pcu_ctx *c = ctx;
    if (!argmax_takes(row)) return PETREL_ERR_UNSUPPORTED;
    if (slot < 0 || slot >= PETREL_FEED_MAX) return pt_fail(err, PETREL_ERR_INVALID_ARG, "feed slot %d", (int)slot);
    pcu_argmax_out o = {.out = c->arg_hdev + slot, .work = c->arg_work, .next = next, .step = step,
                        .next_dt = next_dt, .step_dt = step_dt};
    TRY(err, pcu_argmax_launch(c->stream, row->dtype, row->data, row->stride[0], row->shape[0], &o));
    TRY(err, cudaEventRecord(c->fed_ev[slot], c->stream));
    return PETREL_OK;
}

static petrel_status pcu_feed_result(void *ctx, int32_t slot, int64_t *index, pt_err *err) {
    pcu_ctx *c = ctx;
    if (slot < 0 || slot >= PETREL_FEED_MAX) return pt_fail(err, PETREL_ERR_INVALID_ARG, "feed slot %d", (int)slot);
    TRY(err, cudaEventSynchronize(c->fed_ev[slot]));
    *index = ((volatile int64_t *)c->arg_host)[slot];
    return PETREL_OK;
}

static petrel_status pcu_topk(void *ctx, const pt_tensor *row, int32_t k, float temperature, int32_t *ids,
                              float *values, int32_t *n, pt_err *err) {
    pcu_ctx *c = ctx;
    if ((row->dtype != PETREL_DTYPE_F32 && row->dtype != PETREL_DTYPE_F16 && row->dtype != PETREL_DTYPE_BF16) ||
        k > PETREL_TOPK_MAX || !pcu_topk_fits(row->shape[0], k))
        return PETREL_ERR_UNSUPPORTED;
    uint64_t *out = c->topk_dev + PCU_TOPK_MERGE;
    TRY(err, pcu_topk_launch(c->stream, row->dtype, row->data, row->stride[0], row->shape[0], k, temperature,
                             c->topk_dev, out));
    TRY(err, cudaMemcpyAsync(c->topk_host, out, (size_t)k * sizeof *out, cudaMemcpyDeviceToHost, c->stream));
    TRY(err, cudaStreamSynchronize(c->stream));
    int32_t m = 0;
    while (m < k && c->topk_host[m]) { /* keys of 0 (no number) sort last */
        pt_topk_unkey(c->topk_host[m], &ids[m], &values[m]);
        m++;
    }
    *n = m;
    return PETREL_OK;
}

const pt_device_ops pcu_device_ops = {
    .name = "cuda",
    .supports = pt_cuda_supports,
    .create = pcu_create,
    .destroy = pcu_destroy,
    .kernel = pcu_kernel,
    .alloc = pcu_alloc,
    .free = pcu_free,
    .upload = pcu_upload,
    .download = pcu_download,
    .copy_into = pcu_copy_into,
    .node_begin = pcu_node_begin,
    .node_end = pcu_node_end,
    .sync = pcu_sync,
    .capture_begin = pcu_capture_begin,
    .capture_end = pcu_capture_end,
    .replay = pcu_replay,
    .graph_free = pcu_graph_free,
    .pos_bound = pcu_pos_bound,
    .marks_init = pcu_marks_init,
    .mark = pcu_mark,
    .elapsed = pcu_elapsed,
    .argmax = pcu_argmax,
    .argmax_feed = pcu_argmax_feed,
    .feed_result = pcu_feed_result,
    .topk = pcu_topk,
};
