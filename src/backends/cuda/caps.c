/*
** caps.c -- the CUDA backend's capability table, assembled from
** caps/<family>.h (one PCU_CAP(op, dtype mask, family) line per op).
*/
#include "caps.h"

static const uint32_t cap_mask[PETREL_OP_COUNT] = {
#define PCU_CAP(id, mask, family) [PETREL_OP_##id] = (mask),
#include "caps/all.h"
#undef PCU_CAP
};

static bool dtype_ok(const pt_graph *g, int32_t vid, uint32_t mask) {
    const pt_value *v = &g->values[vid];
    return v->kind != PT_V_TENSOR || (mask & (1u << v->dtype));
}

/* Arguments of a listed op that its CUDA kernel does not implement, by
 * what they ask for (a static string), or NULL when it runs n. */
static const char *declined_args(const pt_graph *g, const pt_node *n) {
    if (n->op == PETREL_OP_TOPK && n->nargs > 0 && n->args[0].kind == PT_ARG_TENSOR && n->args[0].items[0].vid >= 0 &&
        !pt_dtype_is_float(g->values[n->args[0].items[0].vid].dtype))
        return "topk of integers has no CUDA kernel";
    if (n->op == PETREL_OP_PETREL_ROPE && n->nargs > 3) { /* anything but a literal false */
        const pt_arg *il = &n->args[3];
        if (il->kind != PT_ARG_BOOL || il->n != 1 || il->items[0].vid >= 0 || il->items[0].i != 0)
            return "interleaved RoPE has no CUDA kernel";
    }
    return NULL;
}

bool pt_cuda_has_op(pt_op op) { return (unsigned)op < PETREL_OP_COUNT && cap_mask[op] != 0; }

bool pt_cuda_supports(const pt_graph *g, const pt_node *n, const char **why) {
    uint32_t mask = cap_mask[n->op];
    if (!mask) {
        *why = "no CUDA kernel";
        return false;
    }
    const char *declined = declined_args(g, n);
    if (declined) {
        *why = declined;
        return false;
    }
    for (int a = 0; a < n->nargs; a++) {
        const pt_arg *arg = &n->args[a];
        if (arg->kind != PT_ARG_TENSOR && arg->kind != PT_ARG_TENSORS) continue;
        for (int k = 0; k < arg->n; k++)
            if (arg->items[k].vid >= 0 && !dtype_ok(g, arg->items[k].vid, mask)) {
                *why = "dtype not supported on CUDA";
                return false;
            }
    }
    for (int k = 0; k < n->nout; k++)
        if (n->outs[k] >= 0 && !dtype_ok(g, n->outs[k], mask)) {
            *why = "dtype not supported on CUDA";
            return false;
        }
    return true;
}
