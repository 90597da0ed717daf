/*
** graph_util.h -- building small graphs by hand in the white-box unit
** tests (test_state, test_fusion, test_fold, test_qmatmul, test_threads,
** test_quant, test_float_paths).
*/
#ifndef PETREL_TESTS_GRAPH_UTIL_H
#define PETREL_TESTS_GRAPH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "petrel.h"

/* An empty graph of the export ("TRAINING") dialect. */
static inline void tg_init(pt_graph *g) {
    memset(g, 0, sizeof *g);
    g->dialect = pt_strdup("TRAINING");
    g->schema_major = 8;
}

/* Append a tensor value with contiguous strides; a BUFFER gets its name as
 * fqn, a USER_INPUT joins the graph's inputs.  Returns its id. */
static inline int32_t tg_value(pt_graph *g, const char *name, pt_vsrc src, petrel_dtype dt, int rank,
                               const int64_t *shape) {
    pt_value *vs = pt_realloc(g->values, (size_t)(g->nvalues + 1) * sizeof *vs);
    if (!vs) abort();
    g->values = vs;
    g->cap_values = g->nvalues + 1;
    pt_value *v = &g->values[g->nvalues];
    memset(v, 0, sizeof *v);
    v->name = pt_strdup(name);
    v->kind = PT_V_TENSOR;
    v->src = src;
    v->dtype = dt;
    v->rank = rank;
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; d--) {
        v->shape[d].lit = shape[d];
        v->strides[d] = stride;
        stride *= shape[d];
    }
    if (src == PT_SRC_BUFFER) v->fqn = pt_strdup(name);
    if (src == PT_SRC_USER_INPUT) {
        int32_t *in = pt_realloc(g->inputs, (size_t)(g->ninputs + 1) * sizeof *in);
        if (!in) abort();
        g->inputs = in;
        g->inputs[g->ninputs++] = g->nvalues;
    }
    return g->nvalues++;
}

/* A new contiguous value made by `src` (a user input, a buffer or a node). */
static inline int32_t hv(pt_graph *g, pt_vsrc src, petrel_dtype dt, int rank, const int64_t *shape) {
    char name[16];
    snprintf(name, sizeof name, "v%d", (int)g->nvalues);
    return tg_value(g, name, src, dt, rank, shape);
}

/* Append node `op` with nargs arguments (None until set) and the nout
 * results outs (the node named after the first). */
static inline pt_node *tg_node(pt_graph *g, pt_op op, int nargs, int nout, const int32_t *outs) {
    pt_node *ns = pt_realloc(g->nodes, (size_t)(g->nnodes + 1) * sizeof *ns);
    if (!ns) abort();
    g->nodes = ns;
    pt_node *n = &g->nodes[g->nnodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = pt_strdup(g->values[outs[0]].name);
    n->nargs = nargs;
    n->args = pt_calloc((size_t)nargs, sizeof *n->args);
    n->nout = nout;
    n->outs = pt_calloc((size_t)nout, sizeof *n->outs);
    memcpy(n->outs, outs, (size_t)nout * sizeof *outs);
    return n;
}

/* Node `op` making a value with the meta of value `like`, every schema
 * argument given: a value id, or -1 None, -2 False, -3 the number 1. */
static inline int32_t hn(pt_graph *g, pt_op op, int32_t like, int nargs, const int32_t *args) {
    int64_t shape[PETREL_MAX_RANK];
    for (int d = 0; d < g->values[like].rank; d++) shape[d] = g->values[like].shape[d].lit;
    int32_t out = hv(g, PT_SRC_NODE, g->values[like].dtype, g->values[like].rank, shape);
    pt_node *n = tg_node(g, op, nargs, 1, &out);
    for (int a = 0; a < nargs; a++) {
        if (args[a] == -1) continue; /* PT_ARG_NONE */
        n->args[a].kind = args[a] >= 0 ? PT_ARG_TENSOR : args[a] == -2 ? PT_ARG_BOOL : PT_ARG_INT;
        n->args[a].n = 1;
        n->args[a].items = pt_calloc(1, sizeof *n->args[a].items);
        n->args[a].items[0] = (pt_item){args[a] >= 0 ? args[a] : -1, args[a] == -3, args[a] == -3};
    }
    return out;
}

/* Give the last node the schema defaults of the arguments after its
 * first ones (the trailing options of a fused op). */
static inline void tg_defaults(pt_graph *g) {
    pt_node *n = &g->nodes[g->nnodes - 1];
    pt_schema sc;
    pt_err err = {{0}};
    if (!pt_schema_parse(pt_op_table[n->op].schema, &sc) || n->nargs >= sc.nargs) return;
    pt_arg *args = pt_realloc(n->args, (size_t)sc.nargs * sizeof *args);
    if (!args) return;
    n->args = args;
    for (int k = n->nargs; k < sc.nargs; k++) {
        memset(&args[k], 0, sizeof args[k]);
        if (pt_arg_default(&sc.args[k], &args[k], "test graph", &err) != PETREL_OK) break;
        n->nargs = k + 1;
    }
}

#define DIMS(...) ((int64_t[]){__VA_ARGS__})
#define HN(g, op, like, ...) \
    hn((g), (op), (like), (int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)), (int32_t[]){__VA_ARGS__})

#ifdef PETREL_FORMAT_H
/* Write g as a program file at path and load it: the program, or NULL with
 * why in why[n] (the file removed).  For tests that include format.h. */
static inline petrel_program_t *tg_load(const pt_graph *g, const char *path, char *why, size_t n) {
    pt_err err = {{0}};
    petrel_program_t *p = NULL;
    if (pf_write(g, NULL, 0, path, &err) != PETREL_OK || petrel_program_load(&p, path, NULL) != PETREL_OK) {
        snprintf(why, n, "%s", err.msg[0] ? err.msg : petrel_last_error());
        remove(path);
        return NULL;
    }
    return p;
}

/* Compile `in` with opts (NULL: the defaults) into the program file
 * `path` and read it back into *g, mapped in *map: false with why in
 * why[n] when either fails (nothing is then left mapped or at path).
 * tg_release undoes it. */
static inline bool tg_compile_read(const char *in, const char *path, const petrel_compile_opts *opts,
                                   petrel_compile_report *r, pt_mapping *map, pt_graph *g, char *why, size_t n) {
    pt_err err = {{0}};
    memset(g, 0, sizeof *g);
    if (petrel_compile(r, in, path, opts) != PETREL_OK) {
        snprintf(why, n, "compile: %s", petrel_last_error());
        return false;
    }
    if (pt_map_file(map, path, &err) != PETREL_OK) {
        snprintf(why, n, "%s", err.msg);
        remove(path);
        return false;
    }
    if (pf_read(g, map->data, map->size, true, &err) != PETREL_OK) {
        snprintf(why, n, "reading the program: %s", err.msg);
        pt_unmap_file(map);
        remove(path);
        return false;
    }
    return true;
}

static inline void tg_release(const char *path, pt_mapping *map, pt_graph *g) {
    pt_graph_free(g);
    pt_unmap_file(map);
    remove(path);
}
#endif

#ifdef PETREL_COMPILER_H
/* petrel_compile's passes before constant folding and quantization, in
 * its order.  For tests that include compiler.h. */
static inline void tg_passes(pt_graph *g) {
    pc_remove_noops(g);
    pc_canonicalize(g);
    pc_fuse(g);
    pc_forward_state(g);
    pc_cse(g);
    pc_dce(g);
}
#endif

#endif /* PETREL_TESTS_GRAPH_UTIL_H */
