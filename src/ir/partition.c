/*
** partition.c -- placing nodes on backends.  Each backend declares what it
** runs (a pt_supports_fn over op and dtypes); a data node goes to the
** chosen device when supported, else stays on the CPU; metadata-only
** nodes (views, shape arithmetic) follow their input.  The executor moves
** a value across when a node reads it from the other side, so any
** placement is correct; the report says how much crossing it costs.
*/
#include <string.h>

#include "ir.h"

bool pt_op_is_meta(pt_op op) {
    const char *k = pt_op_table[op].kernel;
    if (!strcmp(k, "view")) return true;
    if (!strcmp(k, "symbolic")) return op != PETREL_OP_ITEM && op != PETREL_OP_LOCAL_SCALAR_DENSE;
    if (!strcmp(k, "noop")) return op != PETREL_OP_ASSERT_ASYNC_MSG;
    return false;
}

/* First tensor argument's value id, or -1. */
static int32_t first_tensor(const pt_node *n) {
    for (int a = 0; a < n->nargs; a++)
        if ((n->args[a].kind == PT_ARG_TENSOR || n->args[a].kind == PT_ARG_TENSORS) && n->args[a].n > 0 &&
            n->args[a].items[0].vid >= 0)
            return n->args[a].items[0].vid;
    return -1;
}

/* Alias root of each value: a view or in-place result shares its input's
 * storage, so its root is the input's root. */
static void alias_roots(const pt_graph *g, int32_t *root) {
    for (int32_t i = 0; i < g->nvalues; i++) root[i] = i;
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        unsigned fl = pt_op_table[n->op].flags;
        if (!(fl & (PT_OPF_VIEW | PT_OPF_INPLACE)) || n->nargs == 0 || n->args[0].kind != PT_ARG_TENSOR) continue;
        int32_t in = n->args[0].items[0].vid;
        if (in < 0) continue;
        for (int k = 0; k < n->nout; k++)
            if (n->outs[k] >= 0) root[n->outs[k]] = root[in];
    }
}

void pt_value_devices(const pt_graph *g, uint8_t *out) {
    int32_t *root = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *root);
    for (int32_t i = 0; i < g->nvalues; i++) out[i] = PT_DEV_CPU;
    if (root) alias_roots(g, root);
    /* a buffer lives on the device when a device node reads or writes it
     * (or a view of it); everything else a node makes lives where the node ran */
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        if (n->device == PT_DEV_CPU || pt_op_is_meta(n->op)) continue;
        for (int a = 0; a < n->nargs; a++) {
            if (n->args[a].kind != PT_ARG_TENSOR && n->args[a].kind != PT_ARG_TENSORS) continue;
            for (int k = 0; k < n->args[a].n; k++) {
                int32_t v = n->args[a].items[k].vid;
                if (v < 0) continue;
                int32_t r = root ? root[v] : v;
                if (g->values[r].src == PT_SRC_BUFFER) out[r] = n->device;
            }
        }
    }
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        uint8_t d = n->device;
        if (pt_op_is_meta(n->op)) {
            int32_t in = first_tensor(n);
            d = in >= 0 ? out[in] : PT_DEV_CPU;
        }
        for (int k = 0; k < n->nout; k++)
            if (n->outs[k] >= 0) out[n->outs[k]] = d;
    }
    pt_free(root);
}

static void add_reason(pt_partition_report *rep, pt_op op, const char *why) {
    for (int32_t i = 0; i < rep->nreasons; i++)
        if (rep->reasons[i].op == op && !strcmp(rep->reasons[i].why, why)) {
            rep->reasons[i].count++;
            return;
        }
    if (rep->nreasons < PT_PARTITION_MAX_REASONS)
        rep->reasons[rep->nreasons++] = (pt_partition_reason){op, why, 1};
}

void pt_partition(pt_graph *g, int dev, pt_supports_fn supports, pt_partition_report *rep) {
    pt_partition_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        pt_node *n = &g->nodes[ni];
        n->device = PT_DEV_CPU;
        if (pt_op_is_meta(n->op)) {
            rep->meta++;
            continue;
        }
        const char *why = "not supported";
        if (dev != PT_DEV_CPU && supports && supports(g, n, &why)) {
            n->device = (uint8_t)dev;
            rep->on_device++;
        } else {
            rep->on_cpu++;
            if (dev != PT_DEV_CPU) add_reason(rep, n->op, why);
        }
    }
    /* metadata nodes take their input's device; count the crossings */
    uint8_t *home = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1));
    if (!home) return;
    pt_value_devices(g, home);
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        pt_node *n = &g->nodes[ni];
        if (pt_op_is_meta(n->op)) {
            int32_t in = first_tensor(n);
            n->device = in >= 0 ? home[in] : PT_DEV_CPU;
            continue;
        }
        for (int a = 0; a < n->nargs; a++) {
            if (n->args[a].kind != PT_ARG_TENSOR && n->args[a].kind != PT_ARG_TENSORS) continue;
            for (int k = 0; k < n->args[a].n; k++) {
                int32_t v = n->args[a].items[k].vid;
                /* weights are copied once at load, inputs on every call anyway */
                if (v >= 0 && g->values[v].kind == PT_V_TENSOR && g->values[v].src == PT_SRC_NODE &&
                    home[v] != n->device)
                    rep->transfers++;
            }
        }
    }
    pt_free(home);
}
