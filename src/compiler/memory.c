/*
** memory.c -- the executor's memory model as the passes see it (state.c,
** cse.c, the no-op removal of passes.c): the "root" of a value is the
** value whose memory it is -- itself, or through views (PT_OPF_VIEW) and
** in-place results (PT_OPF_INPLACE) the value it was made from; any other
** node makes fresh memory.  A write to a value writes its root's memory.
** Layer: compiler.
*/
#include <string.h>

#include "compiler.h"

/* Tensor argument a (its value id), or -1. */
static int32_t tensor_arg(const pt_node *n, int a) {
    if (a >= n->nargs || n->args[a].kind != PT_ARG_TENSOR || n->args[a].n != 1) return -1;
    return n->args[a].items[0].vid;
}

void pc_find_roots(const pt_graph *g, int32_t *root) {
    for (int32_t v = 0; v < g->nvalues; v++) root[v] = v;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        int32_t x = tensor_arg(n, 0);
        if (x < 0 || !(pt_op_table[n->op].flags & (PT_OPF_VIEW | PT_OPF_INPLACE))) continue;
        for (int k = 0; k < n->nout; k++)
            if (n->outs[k] >= 0) root[n->outs[k]] = root[x];
    }
}

bool pc_is_writer(const pt_node *n) { return pt_op_table[n->op].flags & (PT_OPF_INPLACE | PT_OPF_STATE); }

bool pc_writes_arg(const pt_node *n, int a) {
    unsigned fl = pt_op_table[n->op].flags;
    if (fl & PT_OPF_INPLACE) return a == 0;
    if (!(fl & PT_OPF_STATE)) return false;
    pt_schema sc;
    return !pt_schema_parse(pt_op_table[n->op].schema, &sc) || a >= sc.nargs || sc.args[a].writes;
}

bool pc_writes(const pt_node *n, const int32_t *root, const bool *set) {
    if (!pc_is_writer(n)) return false;
    /* an in-place op on no tensor value: assume it writes anything */
    if ((pt_op_table[n->op].flags & PT_OPF_INPLACE) && tensor_arg(n, 0) < 0) return true;
    for (int a = 0; a < n->nargs; a++) {
        if (!pc_writes_arg(n, a)) continue;
        for (int k = 0; k < n->args[a].n; k++) {
            int32_t v = n->args[a].items[k].vid;
            if (v >= 0 && set[root[v]]) return true;
        }
    }
    return false;
}

bool pc_same_meta(const pt_value *a, const pt_value *b) {
    if (a->kind != b->kind) return false;
    if (a->kind != PT_V_TENSOR) return true;
    if (a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int d = 0; d < a->rank; d++)
        if (!pt_dim_eq(&a->shape[d], &b->shape[d])) return false;
    return true;
}
