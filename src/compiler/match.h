/*
** match.h -- the pattern-matching kit the graph rewrites share (fuse.c,
** canon.c): a def-use index of the graph, small readers of nodes, values
** and literals, and a match (the nodes it takes, the op and arguments of
** the node that replaces its last one) with the checks and the rewrite
** that apply it.  The small helpers are static inline so each pass keeps
** its short names.  Layer: compiler.
*/
#ifndef PETREL_COMPILER_MATCH_H
#define PETREL_COMPILER_MATCH_H

#include <math.h>
#include <string.h>

#include "compiler.h"

#define FZ_MAX_NODES 64
#define FZ_MAX_ARGS 25 /* the most arguments of a fused op (qkv_attn has 25) */

/* ---- def-use index -------------------------------------------------------- */

typedef struct fz {
    pt_graph *g;
    int32_t *def;    /* (nvalues) node defining each value, -1 when none */
    int32_t *ustart; /* (nvalues + 1) offsets of each value's readers in `users` */
    int32_t *users;  /* node index per read (a node reading twice is listed twice) */
    bool *result;    /* (nvalues) a user output */
    int32_t *nmut;   /* (nvalues) buffer mutations storing it */
} fz;

static inline int32_t nuse(const fz *f, int32_t v) { return v >= 0 ? f->ustart[v + 1] - f->ustart[v] : 0; }

/* The one node reading v, when v has exactly one read and is no graph
 * result; else -1. */
static inline int32_t only_user(const fz *f, int32_t v) {
    if (v < 0 || nuse(f, v) != 1 || f->result[v] || f->nmut[v]) return -1;
    return f->users[f->ustart[v]];
}

/* ---- node and value helpers ----------------------------------------------- */

/* Value v; a missing value (v < 0) reads as a rank-0 None, which fails
 * every check a matcher makes. */
static inline const pt_value *val(const fz *f, int32_t v) {
    static const pt_value none = {.kind = PT_V_NONE};
    return v >= 0 ? &f->g->values[v] : &none;
}
static inline const pt_node *node(const fz *f, int32_t i) { return i >= 0 ? &f->g->nodes[i] : NULL; }

static inline int32_t out0(const pt_node *n) { return n && n->nout >= 1 ? n->outs[0] : -1; }

/* The node defining v, or NULL (an input, a weight, or v < 0). */
static inline const pt_node *defn(const fz *f, int32_t v) {
    return v >= 0 && f->def[v] >= 0 ? &f->g->nodes[f->def[v]] : NULL;
}

/* The node defining v when it has op `op`, else NULL. */
static inline const pt_node *def_op(const fz *f, int32_t v, pt_op op) {
    const pt_node *n = defn(f, v);
    return n && n->op == op ? n : NULL;
}

static inline int32_t node_index(const fz *f, const pt_node *n) { return (int32_t)(n - f->g->nodes); }

/* Tensor argument a (its value id), or -1. */
static inline int32_t tin(const pt_node *n, int a) {
    if (!n || a >= n->nargs || n->args[a].kind != PT_ARG_TENSOR || n->args[a].n != 1) return -1;
    return n->args[a].items[0].vid;
}

static inline bool none_arg(const pt_node *n, int a) { return a < n->nargs && n->args[a].kind == PT_ARG_NONE; }

/* A literal number argument (int, float or bool written into the graph). */
static inline bool lit_num(const pt_node *n, int a, double *out) {
    if (!n || a >= n->nargs) return false;
    const pt_arg *g = &n->args[a];
    if ((g->kind != PT_ARG_INT && g->kind != PT_ARG_FLOAT && g->kind != PT_ARG_BOOL) || g->n != 1 ||
        g->items[0].vid >= 0)
        return false;
    *out = g->kind == PT_ARG_FLOAT ? g->items[0].f : (double)g->items[0].i;
    return true;
}

static inline bool lit_is(const pt_node *n, int a, double want) {
    double v;
    return lit_num(n, a, &v) && v == want;
}

/* d normalized against rank (negative counts from the end), or -1. */
static inline int wrap_dim(int64_t d, int rank) {
    if (d < 0) d += rank;
    return d >= 0 && d < rank ? (int)d : -1;
}

/* A literal dim argument normalized against `rank`, or -1. */
static inline int lit_dim_arg(const pt_node *n, int a, int rank) {
    double d;
    if (!lit_num(n, a, &d) || d != floor(d)) return -1;
    return wrap_dim((int64_t)d, rank);
}

/* A literal int list argument; returns its length, -1 when not literal. */
static inline int lit_ints(const pt_node *n, int a, int64_t *out, int max) {
    if (!n || a >= n->nargs) return -1;
    const pt_arg *g = &n->args[a];
    if ((g->kind != PT_ARG_INTS && g->kind != PT_ARG_INT) || g->n > max) return -1;
    for (int k = 0; k < g->n; k++) {
        if (g->items[k].vid >= 0) return -1;
        out[k] = g->items[k].i;
    }
    return g->n;
}

static inline bool same_shape(const pt_value *a, const pt_value *b) {
    if (a->rank != b->rank) return false;
    for (int d = 0; d < a->rank; d++)
        if (!pt_dim_eq(&a->shape[d], &b->shape[d])) return false;
    return true;
}

/* Static size of dim d (negative counts from the end), or -1. */
static inline int64_t lit_size(const pt_value *v, int d) {
    if (d < 0) d += v->rank;
    if (d < 0 || d >= v->rank || v->shape[d].expr) return -1;
    return v->shape[d].lit;
}

static inline bool is_float_tensor(const pt_value *v) { return v->kind == PT_V_TENSOR && pt_dtype_is_float(v->dtype); }

static inline bool is_view_op(pt_op op) {
    return op == PETREL_OP_VIEW || op == PETREL_OP_RESHAPE || op == PETREL_OP_UNSAFE_VIEW;
}

/* The value whose memory v is, in the executor's model (as in state.c):
 * through views and in-place results, the value they were made from. */
static inline int32_t root_of(const fz *f, int32_t v) {
    const pt_node *n;
    while ((n = defn(f, v)) != NULL && (pt_op_table[n->op].flags & (PT_OPF_VIEW | PT_OPF_INPLACE)) && tin(n, 0) >= 0)
        v = tin(n, 0);
    return v;
}

/* May node n write the memory of v?  Every tensor a writer reads counts
 * as written (the ones it writes are among them). */
static inline bool may_write(const fz *f, const pt_node *n, int32_t v) {
    if (!(pt_op_table[n->op].flags & (PT_OPF_INPLACE | PT_OPF_STATE))) return false;
    int32_t r = root_of(f, v);
    for (int a = 0; a < n->nargs; a++)
        for (int k = 0; k < n->args[a].n; k++)
            if (n->args[a].items[k].vid >= 0 && root_of(f, n->args[a].items[k].vid) == r) return true;
    return false;
}

/* ---- a match: its nodes and the fused node's arguments --------------------- */

typedef struct fz_match {
    int32_t nodes[FZ_MAX_NODES];
    int n;
    bool overflow;
    int32_t final;                /* node replaced by the fused one */
    pt_op op;
    pt_arg args[FZ_MAX_ARGS];
    int nargs;
    bool oom;
    int32_t drop_muts[2];         /* buffer mutations the fused op takes over */
    int ndrop;
    int32_t late[4];              /* a fold: all the values its moved nodes read */
    int nlate;
    int32_t outs[4];              /* nouts > 0: the fused node's results, values of */
    int nouts;                    /* matched nodes no earlier than the final one, or
                                     read only by matched nodes */
} fz_match;

static inline void take(fz_match *m, const fz *f, const pt_node *n) {
    int32_t i = node_index(f, n);
    for (int k = 0; k < m->n; k++)
        if (m->nodes[k] == i) return;
    if (m->n == FZ_MAX_NODES) {
        m->overflow = true;
        return;
    }
    m->nodes[m->n++] = i;
}

static inline bool taken(const fz_match *m, int32_t i) {
    for (int k = 0; k < m->n; k++)
        if (m->nodes[k] == i) return true;
    return false;
}

static inline pt_arg *next_arg(fz_match *m, pt_arg_kind kind, bool item) {
    static pt_arg spill; /* past FZ_MAX_ARGS (a bug): fail the match */
    if (m->nargs == FZ_MAX_ARGS) {
        m->oom = true;
        memset(&spill, 0, sizeof spill);
        return &spill;
    }
    pt_arg *a = &m->args[m->nargs++];
    memset(a, 0, sizeof *a);
    a->kind = kind;
    if (item) {
        a->items = pt_calloc(1, sizeof *a->items);
        if (!a->items) m->oom = true;
        else a->n = 1;
    }
    return a;
}

static inline void put_tensor(fz_match *m, int32_t vid) {
    pt_arg *a = next_arg(m, vid >= 0 ? PT_ARG_TENSOR : PT_ARG_NONE, vid >= 0);
    if (a->items) a->items[0].vid = vid;
}

static inline void put_float(fz_match *m, double v) {
    pt_arg *a = next_arg(m, PT_ARG_FLOAT, true);
    if (a->items) a->items[0] = (pt_item){-1, 0, v};
}

static inline void put_bool(fz_match *m, bool v) {
    pt_arg *a = next_arg(m, PT_ARG_BOOL, true);
    if (a->items) a->items[0] = (pt_item){-1, v, 0};
}

static inline void put_dtype(fz_match *m, int dt) {
    pt_arg *a = next_arg(m, dt >= 0 ? PT_ARG_DTYPE : PT_ARG_NONE, dt >= 0);
    if (a->items) a->items[0] = (pt_item){-1, dt, 0};
}

static inline void put_none(fz_match *m) { next_arg(m, PT_ARG_NONE, false); }

static inline void match_free(fz_match *m) {
    for (int a = 0; a < m->nargs; a++) {
        pt_free(m->args[a].items);
        pt_free(m->args[a].str);
    }
    m->nargs = 0;
}

/* Index the graph's definitions and reads.  False when memory ran out
 * (nothing to free then). */
PT_HIDDEN bool pc_fz_build(fz *f, pt_graph *g);
PT_HIDDEN void pc_fz_free(fz *f);

/* Every value a matched node (other than the final one) produces is read
 * only by matched nodes and is no graph result (except the mutations the
 * node replacing the final one takes over, and the fused node's own
 * results `outs`), and no unmatched node between the first and the final
 * one writes memory (the new node reads its inputs later than the matched
 * nodes did); for a fold or a match with `late` inputs, none writes the
 * memory of those values. */
PT_HIDDEN bool pc_match_closed(const fz *f, const fz_match *m);

/* Replace the final node by m's op and arguments (which it takes over),
 * with m's `outs` as its results when given (the final node's own result
 * among them; the others are made later, so their readers follow it),
 * drop the other matched nodes and the buffer mutations the new node
 * performs itself.  False (graph unchanged) when memory runs out. */
PT_HIDDEN bool pc_match_apply(pt_graph *g, fz_match *m);

typedef bool (*fz_matcher)(const fz *f, int32_t anchor, fz_match *m);

/* Apply `match` at every anchor, rescanning after each change; returns the
 * number of matches applied (those made before memory ran out). */
PT_HIDDEN int pc_match_all(pt_graph *g, fz_matcher match);

/* The rotary tables of HF's rotary embedding => petrel.rope_table
 * (rotary.c); anchor: the cat of the freqs with themselves. */
PT_HIDDEN bool pc_match_rope_table(const fz *f, int32_t anchor, fz_match *m);

#endif /* PETREL_COMPILER_MATCH_H */
