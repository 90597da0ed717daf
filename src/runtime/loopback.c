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

static petrel_status lb_create(void **ctx, pt_err *err) {
    (void)err;
    *ctx = NULL;
    return PETREL_OK;
}
static void lb_destroy(void *ctx) { (void)ctx; }
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
};
