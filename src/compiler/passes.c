/*
** passes.c -- graph clean-up passes: no-op removal and dead-code
** elimination.  Each pass keeps the graph valid (pt_graph_verify) and the
** node order topological.
*/
#include <string.h>

#include "compiler.h"

void pc_replace_uses(pt_graph *g, int32_t from, int32_t to) {
    for (int32_t i = 0; i < g->nnodes; i++) {
        pt_node *n = &g->nodes[i];
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid == from) n->args[a].items[k].vid = to;
    }
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid == from) g->outputs[i].item.vid = to;
    for (int32_t i = 0; i < g->nmuts; i++)
        if (g->muts[i].value_vid == from) g->muts[i].value_vid = to;
}

/* Compact the node array, dropping nodes marked in `dead`. */
int pc_remove_nodes(pt_graph *g, const bool *dead) {
    int32_t w = 0, removed = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        if (dead[i]) {
            pt_node_free(&g->nodes[i]);
            removed++;
            continue;
        }
        g->nodes[w++] = g->nodes[i];
    }
    g->nnodes = w;
    return removed;
}

/* Is `vid` a graph output or the source of a buffer update? */
static bool is_graph_result(const pt_graph *g, int32_t vid) {
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid == vid) return true;
    for (int32_t i = 0; i < g->nmuts; i++)
        if (g->muts[i].value_vid == vid) return true;
    return false;
}

int pc_remove_noops(pt_graph *g) {
    bool *dead = pt_calloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof *dead);
    if (!dead) return 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        pt_node *n = &g->nodes[i];
        if (n->op == PETREL_OP_ASSERT_TENSOR_METADATA) {
            dead[i] = true;
            continue;
        }
        bool passthrough = n->op == PETREL_OP_ALIAS || n->op == PETREL_OP_DETACH ||
                           (n->op == PETREL_OP_DROPOUT && n->args[2].n == 1 && n->args[2].items[0].vid < 0 &&
                            n->args[2].items[0].i == 0);
        if (!passthrough || n->nout != 1 || n->outs[0] < 0 || n->args[0].kind != PT_ARG_TENSOR) continue;
        int32_t out = n->outs[0], in = n->args[0].items[0].vid;
        /* a graph result must stay a distinct value (its name is the output) */
        if (is_graph_result(g, out) && g->values[in].src != PT_SRC_NODE) continue;
        /* input and output are the same tensor in these ops, so users can
         * read the input directly */
        pc_replace_uses(g, out, in);
        dead[i] = true;
    }
    int removed = pc_remove_nodes(g, dead);
    pt_free(dead);
    return removed;
}

bool pc_mark_live(const pt_graph *g, bool *live) {
    bool *used = pt_calloc((size_t)(g->nvalues ? g->nvalues : 1), sizeof *used);
    if (!used) return false;
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) used[g->outputs[i].item.vid] = true;
    for (int32_t i = 0; i < g->nmuts; i++) used[g->muts[i].value_vid] = true;
    for (int32_t i = g->nnodes - 1; i >= 0; i--) {
        const pt_node *n = &g->nodes[i];
        unsigned flags = pt_op_table[n->op].flags;
        /* in-place ops write state (possibly through a view); checks fail
         * loudly; both stay even when their result is unused */
        live[i] = (flags & (PT_OPF_INPLACE | PT_OPF_STATE)) || !strcmp(pt_op_table[n->op].kernel, "noop");
        for (int k = 0; !live[i] && k < n->nout; k++) live[i] = n->outs[k] >= 0 && used[n->outs[k]];
        if (!live[i]) continue;
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) used[n->args[a].items[k].vid] = true;
    }
    pt_free(used);
    return true;
}

int pc_dce(pt_graph *g) {
    bool *live = pt_calloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof *live);
    int removed = 0;
    if (live && pc_mark_live(g, live)) {
        for (int32_t i = 0; i < g->nnodes; i++) live[i] = !live[i]; /* now: dead */
        removed = pc_remove_nodes(g, live);
    }
    pt_free(live);
    return removed;
}
