/*
** ir.c -- ownership of the graph IR: everything a pt_graph points to is
** owned by it and released by pt_graph_free.
*/
#include <string.h>

#include "ir.h"

void pt_node_free(pt_node *n) {
    for (int32_t a = 0; n->args && a < n->nargs; a++) {
        pt_free(n->args[a].items);
        pt_free(n->args[a].str);
    }
    pt_free(n->args);
    pt_free(n->outs);
    pt_free(n->name);
    memset(n, 0, sizeof *n);
}

void pt_graph_free(pt_graph *g) {
    if (!g) return;
    for (int32_t i = 0; i < g->nvalues; i++) {
        pt_free(g->values[i].name);
        pt_free(g->values[i].fqn);
    }
    pt_free(g->values);
    for (int32_t i = 0; i < g->nnodes; i++) pt_node_free(&g->nodes[i]);
    pt_free(g->nodes);
    pt_free(g->inputs);
    pt_free(g->outputs);
    pt_free(g->muts);
    for (int32_t i = 0; i < g->nsyms; i++) pt_free(g->syms[i].name);
    pt_free(g->syms);
    for (int32_t i = 0; i < g->nexprs; i++) {
        pt_free(g->exprs[i]->kids);
        pt_free(g->exprs[i]);
    }
    pt_free(g->exprs);
    pt_free(g->dialect);
    memset(g, 0, sizeof *g);
}
