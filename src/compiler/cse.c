/*
** cse.c -- common-subexpression elimination: a node with the same op and
** the same arguments (the same value ids, bit-identical literals) as an
** earlier one is removed and its readers read the earlier node's results.
** Only pure, deterministic nodes merge: never a node that writes memory
** (in-place and state ops), a check, or an op whose result is no function
** of its arguments (random draws, uninitialized memory, dropout); and
** never twins whose results live in memory some node writes, or with a
** write to what the later one reads between them (memory.c's roots).
**
** It runs after fusion and the state forwarding (compile.c): forwarding
** makes StaticCache's per-layer positions (arange(T) + a counter copied
** from cache_position) identical, so they merge into one.  Before fusion
** it would hurt: merging a core-ATen graph's identical flattening views of
** one input (one per projection) gives them readers outside each linear's
** match, and merging the position casts of Gemma 3's two rotary tables
** does the same to those, so fewer subgraphs would fuse.  Layer: compiler.
*/
#include <string.h>

#include "compiler.h"

static bool is_op_kernel(const pt_node *n, const char *kernel) { return !strcmp(pt_op_table[n->op].kernel, kernel); }

/* Ops whose result is no function of their arguments: random draws
 * (matched by name, so an op added to ops.def later is covered too),
 * uninitialized memory, attention with dropout. */
static bool nondeterministic(const pt_node *n) {
    static const char *const words[] = {"rand",   "bernoulli", "multinomial", "normal",  "uniform", "poisson",
                                        "exponential", "cauchy", "geometric", "dropout", "rrelu",   "empty"};
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
        if (strstr(pt_op_table[n->op].target, words[k])) return true;
    if (n->op == PETREL_OP_SDPA) {
        const pt_arg *p = &n->args[4]; /* dropout_p */
        return !(p->kind == PT_ARG_FLOAT && p->n == 1 && p->items[0].vid < 0 && p->items[0].f == 0);
    }
    return false;
}

static bool cse_candidate(const pt_node *n) {
    return n->nout > 0 && !pc_is_writer(n) && !is_op_kernel(n, "noop") && !nondeterministic(n);
}

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull + (h >> 29); }

static uint64_t node_hash(const pt_node *n) {
    uint64_t h = mix(0xcbf29ce484222325ull, (uint64_t)n->op);
    for (int a = 0; a < n->nargs; a++) {
        const pt_arg *g = &n->args[a];
        h = mix(mix(h, (uint64_t)g->kind), (uint64_t)g->n);
        for (int k = 0; k < g->n; k++) {
            uint64_t f;
            memcpy(&f, &g->items[k].f, sizeof f);
            h = g->items[k].vid >= 0 ? mix(h, (uint64_t)g->items[k].vid) : mix(mix(h, (uint64_t)g->items[k].i), f);
        }
    }
    return h;
}

/* Same op, same arguments: the same value ids, bit-identical literals. */
static bool same_node(const pt_node *x, const pt_node *y) {
    if (x->op != y->op || x->nargs != y->nargs || x->nout != y->nout || x->device != y->device) return false;
    for (int a = 0; a < x->nargs; a++) {
        const pt_arg *p = &x->args[a], *q = &y->args[a];
        if (p->kind != q->kind || p->n != q->n || p->fixed_len != q->fixed_len || !p->str != !q->str ||
            (p->str && strcmp(p->str, q->str)))
            return false;
        for (int k = 0; k < p->n; k++) {
            const pt_item *u = &p->items[k], *v = &q->items[k];
            if (u->vid != v->vid) return false;
            if (u->vid < 0 && (u->i != v->i || memcmp(&u->f, &v->f, sizeof u->f))) return false;
        }
    }
    return true;
}

typedef struct cse {
    pt_graph *g;
    int32_t *root;     /* (nvalues) */
    bool *written;     /* (nvalues) roots some node writes */
    bool *result;      /* (nvalues) user outputs and stored mutation values */
    bool *mark;        /* (nvalues) scratch */
    int32_t *nwriters; /* (nnodes + 1) writers among the nodes before each index */
    int32_t *table;    /* (cap) node indices, -1 empty */
    int32_t cap;
    bool *dead;        /* (nnodes) */
} cse;

static void cse_free(cse *c) {
    pt_free(c->root);
    pt_free(c->written);
    pt_free(c->result);
    pt_free(c->mark);
    pt_free(c->nwriters);
    pt_free(c->table);
    pt_free(c->dead);
}

static bool cse_init(cse *c, pt_graph *g) {
    size_t nv = (size_t)(g->nvalues ? g->nvalues : 1), nn = (size_t)g->nnodes;
    int32_t cap = 16;
    while (cap < 2 * g->nnodes) cap *= 2;
    *c = (cse){g,
               pt_malloc(nv * sizeof *c->root),
               pt_calloc(nv, 1),
               pt_calloc(nv, 1),
               pt_calloc(nv, 1),
               pt_malloc((nn + 1) * sizeof *c->nwriters),
               pt_malloc((size_t)cap * sizeof *c->table),
               cap,
               pt_calloc(nn ? nn : 1, 1)};
    if (!c->root || !c->written || !c->result || !c->mark || !c->nwriters || !c->table || !c->dead) {
        cse_free(c);
        return false;
    }
    pc_find_roots(g, c->root);
    for (int32_t i = 0; i < c->cap; i++) c->table[i] = -1;
    c->nwriters[0] = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        c->nwriters[i + 1] = c->nwriters[i] + pc_is_writer(n);
        if (!pc_is_writer(n)) continue;
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++) {
                int32_t v = n->args[a].items[k].vid;
                if (v >= 0 && pc_writes_arg(n, a)) c->written[c->root[v]] = true;
            }
    }
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) c->result[g->outputs[i].item.vid] = true;
    for (int32_t i = 0; i < g->nmuts; i++) c->result[g->muts[i].value_vid] = true;
    return true;
}

/* Can node j (same as the earlier node i) be replaced by i?  Its results
 * must not be graph results; no memory either result lives in may ever be
 * written; nothing between them may write what j reads. */
static bool mergeable(cse *c, int32_t i, int32_t j) {
    const pt_graph *g = c->g;
    const pt_node *x = &g->nodes[i], *y = &g->nodes[j];
    for (int k = 0; k < x->nout; k++) {
        int32_t u = x->outs[k], v = y->outs[k];
        if ((u < 0) != (v < 0)) return false;
        if (v < 0) continue;
        if (c->result[v] || !pc_same_meta(&g->values[u], &g->values[v]) || c->written[c->root[u]] ||
            c->written[c->root[v]])
            return false;
    }
    if (c->nwriters[j] == c->nwriters[i + 1]) return true;
    for (int a = 0; a < y->nargs; a++)
        for (int k = 0; k < y->args[a].n; k++)
            if (y->args[a].items[k].vid >= 0) c->mark[c->root[y->args[a].items[k].vid]] = true;
    bool ok = true;
    for (int32_t m = i + 1; ok && m < j; m++) ok = !pc_writes(&g->nodes[m], c->root, c->mark);
    for (int a = 0; a < y->nargs; a++)
        for (int k = 0; k < y->args[a].n; k++)
            if (y->args[a].items[k].vid >= 0) c->mark[c->root[y->args[a].items[k].vid]] = false;
    return ok;
}

int pc_cse(pt_graph *g) {
    cse c;
    if (!cse_init(&c, g)) return 0;
    for (int32_t j = 0; j < g->nnodes; j++) {
        const pt_node *n = &g->nodes[j];
        if (!cse_candidate(n)) continue;
        uint32_t h = (uint32_t)(node_hash(n) & (uint64_t)(c.cap - 1));
        while (c.table[h] >= 0 && !same_node(&g->nodes[c.table[h]], n)) h = (h + 1) & (uint32_t)(c.cap - 1);
        int32_t i = c.table[h];
        if (i >= 0 && mergeable(&c, i, j)) {
            /* i's results are defined before every reader of j's */
            for (int k = 0; k < n->nout; k++)
                if (n->outs[k] >= 0) pc_replace_uses(g, n->outs[k], g->nodes[i].outs[k]);
            c.dead[j] = true;
        } else {
            c.table[h] = j; /* the later twin is the better match for what follows */
        }
    }
    int removed = pc_remove_nodes(g, c.dead);
    cse_free(&c);
    return removed;
}
