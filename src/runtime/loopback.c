/*
** loopback.c -- a stand-in device for tests: "device" memory is host
** memory, its kernels are the CPU kernels, and it claims every other op
** (by op number) plus the fused LLM ops, so a fixture placed on it mixes
** both sides and crosses the boundary often.  It checks the executor's
** placement, transfers, write-backs and device-resident state on machines
** without a GPU.  It has no graphs (the capture functions are NULL), so
** every run is eager.
*/
#include <string.h>
#include <time.h>

#include "../backends/cpu/cpu.h"
#include "device.h"
#include "exec.h"

static bool lb_supports(const pt_graph *g, const pt_node *n, const char **why) {
    (void)g;
    bool fused = !strcmp(pt_op_table[n->op].kernel, "fused");
    if (fused || n->op % 2 == 0) return true;
    *why = "odd op number (loopback test device)";
    return false;
}

/* The context holds the profiling marks and the fed argmax results: this
 * device's work is done when the call returns, so a mark is the host
 * clock. */
typedef struct lb_ctx {
    double *marks;
    int32_t nmarks;
    int64_t fed[PETREL_FEED_MAX];
} lb_ctx;

static petrel_status lb_create(void **ctx, pt_err *err) {
    *ctx = pt_calloc(1, sizeof(lb_ctx));
    return *ctx ? PETREL_OK : pt_fail(err, PETREL_ERR_NOMEM, "out of memory");
}
static void lb_destroy(void *ctx) {
    lb_ctx *c = ctx;
    if (c) pt_free(c->marks);
    pt_free(c);
}
static pt_kernel_fn lb_kernel(pt_op op) { return cpu_kernel(op); }

static petrel_status lb_alloc(void *ctx, size_t n, void **p, pt_err *err) {
    (void)ctx;
    *p = pt_malloc(n ? n : 1);
    return *p ? PETREL_OK : pt_fail(err, PETREL_ERR_NOMEM, "out of (loopback) device memory");
}
static void lb_free(void *p) { pt_free(p); }

static petrel_status lb_copy(void *ctx, void *dst, const void *src, size_t n, pt_err *err) {
    (void)ctx;
    (void)err;
    if (n) memcpy(dst, src, n);
    return PETREL_OK;
}

static petrel_status lb_copy_into(pt_exec *ex, const pt_tensor *dst, const pt_tensor *src) {
    (void)ex;
    pt_copy_into(dst, src);
    return PETREL_OK;
}

static void lb_node_begin(void *ctx) { (void)ctx; }
static petrel_status lb_node_end(void *ctx, bool *retry, pt_err *err) {
    (void)ctx;
    (void)err;
    *retry = false;
    return PETREL_OK;
}
static petrel_status lb_sync(void *ctx, pt_err *err) {
    (void)ctx;
    (void)err;
    return PETREL_OK;
}
static petrel_status lb_marks_init(void *ctx, int32_t n, pt_err *err) {
    lb_ctx *c = ctx;
    pt_free(c->marks);
    c->marks = NULL;
    c->nmarks = 0;
    if (n <= 0) return PETREL_OK;
    if (!(c->marks = pt_calloc((size_t)n, sizeof *c->marks))) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory");
    c->nmarks = n;
    return PETREL_OK;
}
static petrel_status lb_mark(void *ctx, int32_t i, pt_err *err) {
    lb_ctx *c = ctx;
    if (i < 0 || i >= c->nmarks) return pt_fail(err, PETREL_ERR_INVALID_ARG, "profiling mark %d out of range", i);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->marks[i] = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return PETREL_OK;
}
static petrel_status lb_elapsed(void *ctx, int32_t a, int32_t b, double *ms, pt_err *err) {
    lb_ctx *c = ctx;
    if (a < 0 || b < 0 || a >= c->nmarks || b >= c->nmarks)
        return pt_fail(err, PETREL_ERR_INVALID_ARG, "profiling mark out of range");
    *ms = c->marks[b] - c->marks[a];
    return PETREL_OK;
}

static petrel_status lb_argmax(void *ctx, const pt_tensor *row, int64_t *index, pt_err *err) {
    (void)ctx;
    (void)err;
    *index = pt_argmax_row(row); /* the device's memory is host memory */
    return PETREL_OK;
}

static petrel_status lb_argmax_feed(void *ctx, const pt_tensor *row, void *next, petrel_dtype next_dt, void *step,
                                   petrel_dtype step_dt, int32_t slot, pt_err *err) {
    lb_ctx *c = ctx;
    if (slot < 0 || slot >= PETREL_FEED_MAX) return pt_fail(err, PETREL_ERR_INVALID_ARG, "feed slot %d", (int)slot);
    int64_t i = pt_argmax_row(row);
    c->fed[slot] = i;
    pt_store_i64(next, next_dt, i);
    if (step) pt_store_i64(step, step_dt, pt_load_i64(step, step_dt) + 1);
    return PETREL_OK;
}

static petrel_status lb_feed_result(void *ctx, int32_t slot, int64_t *index, pt_err *err) {
    lb_ctx *c = ctx;
    if (slot < 0 || slot >= PETREL_FEED_MAX) return pt_fail(err, PETREL_ERR_INVALID_ARG, "feed slot %d", (int)slot);
    *index = c->fed[slot];
    return PETREL_OK;
}

static petrel_status lb_topk(void *ctx, const pt_tensor *row, int32_t k, float temperature, int32_t *ids,
                             float *values, int32_t *n, pt_err *err) {
    (void)ctx;
    (void)err;
    pt_topk_row(row, k, temperature, ids, values, n);
    return PETREL_OK;
}

const pt_device_ops pt_loopback_ops = {
    .name = "loopback",
    .supports = lb_supports,
    .create = lb_create,
    .destroy = lb_destroy,
    .kernel = lb_kernel,
    .alloc = lb_alloc,
    .free = lb_free,
    .upload = lb_copy,
    .download = lb_copy,
    .copy_into = lb_copy_into,
    .node_begin = lb_node_begin,
    .node_end = lb_node_end,
    .sync = lb_sync,
    .marks_init = lb_marks_init,
    .mark = lb_mark,
    .elapsed = lb_elapsed,
    .argmax = lb_argmax,
    .argmax_feed = lb_argmax_feed,
    .feed_result = lb_feed_result,
    .topk = lb_topk,
};
