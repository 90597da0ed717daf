/*
** passes.c -- graph clean-up passes: no-op removal and dead-code
** elimination.  Each pass keeps the graph valid (pt_graph_verify) and the
** node order topological.
**
** No-ops are aliases (alias, detach, eval-mode dropout: their result is
** their input's memory), checks that compute nothing, and x * 1 or x / 1
** with the number 1 and a result of x's dtype and shape (HF's rotary
** embedding scales cos and sin by attention_scaling, 1.0 for plain RoPE):
** exact in every dtype, NaN and signed zeros included, so the result holds
** x's values in fresh memory.  Its readers may read x instead unless a
** write could tell the two apart: one to the result's memory (through a
** view or in place), or to x's after the node.
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

/* If node n is x * 1 or x / 1 with a literal 1 (a number, not a tensor)
 * and a result of x's dtype and shape, x; else -1.  True division of an
 * integer x gives a float result, so the dtype check leaves it alone. */
static int32_t unit_factor_input(const pt_graph *g, const pt_node *n) {
    bool mul = n->op == PETREL_OP_MUL_TENSOR || n->op == PETREL_OP_MUL_SCALAR;
    if ((!mul && n->op != PETREL_OP_DIV_TENSOR && n->op != PETREL_OP_DIV_SCALAR) || n->nout != 1 || n->outs[0] < 0)
        return -1;
    for (int a = mul ? 0 : 1; a < 2; a++) { /* mul: the number on either side */
        const pt_arg *one = &n->args[a], *x = &n->args[1 - a];
        bool is_one = one->n == 1 && one->items[0].vid < 0 &&
                      ((one->kind == PT_ARG_INT && one->items[0].i == 1) ||
                       (one->kind == PT_ARG_FLOAT && one->items[0].f == 1.0));
        if (!is_one || x->kind != PT_ARG_TENSOR || x->n != 1 || x->items[0].vid < 0) continue;
        const pt_value *xv = &g->values[x->items[0].vid], *ov = &g->values[n->outs[0]];
        return xv->kind == PT_V_TENSOR && pc_same_meta(xv, ov) ? x->items[0].vid : -1;
    }
    return -1;
}

/* last[r] (nvalues entries): the index of the last node writing root r's
 * memory, -1 when none does; *wild: the last in-place node on no tensor
 * (it may write anything), -1 when none. */
static void find_last_writes(const pt_graph *g, const int32_t *root, int32_t *last, int32_t *wild) {
    for (int32_t v = 0; v < g->nvalues; v++) last[v] = -1;
    *wild = -1;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        if (!pc_is_writer(n)) continue;
        if ((pt_op_table[n->op].flags & PT_OPF_INPLACE) &&
            (n->args[0].kind != PT_ARG_TENSOR || n->args[0].n != 1 || n->args[0].items[0].vid < 0))
            *wild = i;
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; pc_writes_arg(n, a) && k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) last[root[n->args[a].items[k].vid]] = i;
    }
}

int pc_remove_noops(pt_graph *g) {
    size_t nv = (size_t)(g->nvalues ? g->nvalues : 1);
    bool *dead = pt_calloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof *dead);
    int32_t *root = pt_malloc(nv * sizeof *root), *last = pt_malloc(nv * sizeof *last), wild;
    if (!dead || !root || !last) {
        pt_free(dead), pt_free(root), pt_free(last);
        return 0;
    }
    /* the writes stay where they are, so one look at them serves the pass */
    pc_find_roots(g, root);
    find_last_writes(g, root, last, &wild);
    for (int32_t i = 0; i < g->nnodes; i++) {
        pt_node *n = &g->nodes[i];
        if (n->op == PETREL_OP_ASSERT_TENSOR_METADATA) {
            dead[i] = true;
            continue;
        }
        int32_t x = unit_factor_input(g, n);
        if (x >= 0) {
            int32_t out = n->outs[0];
            if (is_graph_result(g, out) || last[root[out]] >= 0 || last[root[x]] > i || wild > i) continue;
            pc_replace_uses(g, out, x);
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
    pt_free(dead), pt_free(root), pt_free(last);
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
