/*
** state.c -- state bookkeeping that torch.export leaves in decoder
** graphs, and the redundancy it makes.  transformers' StaticCache keeps a
** position counter per layer: every call overwrites it from cache_position
** (copy_(cumulative_length_i, cache_position[0])), each layer adds it to
** arange(T) for its cache write positions, then bumps it
** (add_(cumulative_length_i, T)) for nobody to read.
**
**   pc_forward_state
**     1. Forwarding.  After copy_(x, s) into a whole tensor x (x no view),
**        or y = copy(x, s), a read of x (or y, or a same-dtype copy or
**        alias of it) with no write to x's or s's memory in between reads s
**        instead, when s has x's dtype and either x's shape, or a shape
**        that broadcasts to it read by a broadcasting binary op whose
**        tensor operands all have s's dtype (so neither the result's shape
**        nor torch's type promotion, which tells 0-d tensors apart,
**        changes).  Views and writers are never redirected.
**     2. Dead writes.  An in-place op on memory that no live node touches
**        afterwards is removed when no later run can observe that memory
**        either: a temporary made in this run, or a buffer whose first
**        access in the run is a full overwrite (copy_, fill_ or zero_ of
**        the buffer itself).  Memory a graph result or a buffer mutation
**        can reach is never touched.  Removing the last reader can leave
**        the overwrite itself dead.  Dead code left behind goes as in
**        pc_dce, and rounds repeat until nothing changes.
**     3. Core-ATen form: a buffer that every node reads only for its shape
**        and dtype (copy(b, s), fill, *_like, sym_size) has its buffer
**        mutations dropped; what computed them is then dead code.
**
** After forwarding, the per-layer arange(T) + position are identical
** expressions, which pc_cse (cse.c) merges into one.
**
** Memory follows the executor's model (memory.c: a value's root is the
** value whose memory it is; a write to a value writes its root's memory).
** The pass keeps the graph valid and topologically ordered.  Layer:
** compiler.
*/
#include <string.h>

#include "compiler.h"

/* ---- memory: what leaves the graph ------------------------------------------- */

static bool is_tensor(const pt_graph *g, int32_t v) { return v >= 0 && g->values[v].kind == PT_V_TENSOR; }

/* Tensor argument a (its value id), or -1. */
static int32_t tensor_arg(const pt_node *n, int a) {
    if (a >= n->nargs || n->args[a].kind != PT_ARG_TENSOR || n->args[a].n != 1) return -1;
    return n->args[a].items[0].vid;
}

static bool is_op_kernel(const pt_node *n, const char *kernel) { return !strcmp(pt_op_table[n->op].kernel, kernel); }

/* obs[r]: root r's memory leaves the graph -- a user output or either side
 * of a buffer mutation can reach it. */
static void find_observed(const pt_graph *g, const int32_t *root, bool *obs) {
    memset(obs, 0, (size_t)g->nvalues * sizeof *obs);
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) obs[root[g->outputs[i].item.vid]] = true;
    for (int32_t i = 0; i < g->nmuts; i++) {
        obs[root[g->muts[i].buffer_vid]] = true;
        obs[root[g->muts[i].value_vid]] = true;
    }
}

/* ---- 1. forwarding --------------------------------------------------------- */

typedef struct st_pass {
    pt_graph *g;
    int32_t *root;  /* (nvalues) */
    bool *mark;     /* (nvalues) scratch set of roots */
    bool *full;     /* (nvalues) values holding the forwarded copy's content */
    bool *obs;      /* (nvalues) observed roots */
    int32_t *first; /* (nvalues) first live node touching each root, or -1 */
    bool *live;     /* (nnodes) */
    bool *dead;     /* (nnodes) */
} st_pass;

static void pass_free(st_pass *p) {
    pt_free(p->root);
    pt_free(p->mark);
    pt_free(p->full);
    pt_free(p->obs);
    pt_free(p->first);
    pt_free(p->live);
    pt_free(p->dead);
}

static bool pass_init(st_pass *p, pt_graph *g) {
    size_t nv = (size_t)(g->nvalues ? g->nvalues : 1), nn = (size_t)(g->nnodes ? g->nnodes : 1);
    *p = (st_pass){g, pt_malloc(nv * sizeof *p->root), pt_calloc(nv, 1), pt_calloc(nv, 1), pt_calloc(nv, 1),
                   pt_malloc(nv * sizeof *p->first), pt_calloc(nn, 1), pt_calloc(nn, 1)};
    if (p->root && p->mark && p->full && p->obs && p->first && p->live && p->dead) return true;
    pass_free(p);
    return false;
}

/* If node f is copy_(x, s) over a whole tensor x (a root) or x = copy(_, s),
 * with s of x's dtype: x holds s's content right after f. */
static bool copy_fact(const pt_graph *g, const int32_t *root, int32_t f, int32_t *x, int32_t *s) {
    const pt_node *n = &g->nodes[f];
    if (n->op == PETREL_OP_COPY_) *x = tensor_arg(n, 0);
    else if (n->op == PETREL_OP_COPY && n->nout == 1) *x = n->outs[0];
    else return false;
    *s = tensor_arg(n, 1);
    if (!is_tensor(g, *x) || !is_tensor(g, *s) || root[*x] != *x || root[*s] == *x) return false;
    return g->values[*x].dtype == g->values[*s].dtype;
}

/* Is node n's result its argument 0's content, unchanged: an alias, or a
 * copy of the same dtype and shape? */
static bool is_identity(const pt_graph *g, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_ALIAS:
    case PETREL_OP_DETACH:
    case PETREL_OP_CONTIGUOUS:
    case PETREL_OP_CLONE:
    case PETREL_OP_TO_COPY:
    case PETREL_OP_TO_DTYPE:
    case PETREL_OP_TO_DTYPE_LAYOUT:
    case PETREL_OP_TO_DEVICE:
    case PETREL_OP_LIFT_FRESH_COPY: break;
    default: return false;
    }
    int32_t x = tensor_arg(n, 0);
    return n->nout == 1 && is_tensor(g, x) && is_tensor(g, n->outs[0]) &&
           pc_same_meta(&g->values[x], &g->values[n->outs[0]]);
}

static bool is_one(const pt_dim *d) { return !d->expr && d->lit == 1; }

/* Binary node n with argument a read as value s: do its tensor operands
 * all have s's dtype and broadcast to n's recorded result shape? */
static bool broadcasts_alike(const pt_graph *g, const pt_node *n, int a, int32_t s) {
    static const pt_dim one = {1, NULL};
    pt_dim shape[PETREL_MAX_RANK], next[PETREL_MAX_RANK];
    int rank = 0;
    for (int b = 0; b < n->nargs; b++) {
        int32_t v = b == a ? s : tensor_arg(n, b);
        if (!is_tensor(g, v)) continue; /* numbers are no shaped operands */
        const pt_value *x = &g->values[v];
        if (x->dtype != g->values[s].dtype) return false;
        int r = x->rank > rank ? x->rank : rank;
        for (int d = 0; d < r; d++) {
            const pt_dim *p = d < r - rank ? &one : &shape[d - (r - rank)];
            const pt_dim *q = d < r - x->rank ? &one : &x->shape[d - (r - x->rank)];
            if (is_one(p)) next[d] = *q;
            else if (is_one(q) || pt_dim_eq(p, q)) next[d] = *p;
            else return false;
        }
        memcpy(shape, next, (size_t)r * sizeof *shape);
        rank = r;
    }
    const pt_value *out = n->nout == 1 && is_tensor(g, n->outs[0]) ? &g->values[n->outs[0]] : NULL;
    if (!out || out->rank != rank) return false;
    for (int d = 0; d < rank; d++)
        if (!pt_dim_eq(&shape[d], &out->shape[d])) return false;
    return true;
}

/* Can node n read s where it reads v (in argument a), v holding s's
 * content at n? */
static bool can_forward(const pt_graph *g, const pt_node *n, int a, int32_t v, int32_t s) {
    const pt_value *vv = &g->values[v], *sv = &g->values[s];
    if (vv->dtype != sv->dtype) return false;
    if (pc_same_meta(vv, sv)) return true;
    return n->args[a].kind == PT_ARG_TENSOR && is_op_kernel(n, "binary") && broadcasts_alike(g, n, a, s);
}

/* Redirect the reads after node f, which leaves root x holding s's
 * content, until something writes x's or s's memory (or the memory of a
 * copy of x made on the way).  Returns the number of reads redirected. */
static int forward_copy(st_pass *p, int32_t f, int32_t x, int32_t s) {
    pt_graph *g = p->g;
    memset(p->mark, 0, (size_t)g->nvalues * sizeof *p->mark);
    memset(p->full, 0, (size_t)g->nvalues * sizeof *p->full);
    p->mark[p->root[s]] = p->mark[x] = true;
    p->full[x] = true;
    const pt_node *fn = &g->nodes[f];
    if (fn->nout == 1 && fn->outs[0] >= 0) p->full[fn->outs[0]] = true; /* copy_ returns x */
    int forwarded = 0;
    for (int32_t i = f + 1; i < g->nnodes; i++) {
        pt_node *n = &g->nodes[i];
        int32_t x0 = tensor_arg(n, 0);
        bool ident = x0 >= 0 && p->full[x0] && is_identity(g, n);
        /* a view would alias the other memory, a writer would write it */
        bool reader = !(pt_op_table[n->op].flags & (PT_OPF_INPLACE | PT_OPF_STATE | PT_OPF_VIEW)) &&
                      !is_op_kernel(n, "noop");
        for (int a = 0; reader && a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++) {
                int32_t v = n->args[a].items[k].vid;
                if (v >= 0 && v != s && p->full[v] && can_forward(g, n, a, v, s)) {
                    n->args[a].items[k].vid = s;
                    forwarded++;
                }
            }
        if (ident) {
            p->full[n->outs[0]] = true;
            p->mark[p->root[n->outs[0]]] = true;
        }
        if (pc_writes(n, p->root, p->mark)) break;
    }
    return forwarded;
}

/* ---- 2. dead writes ---------------------------------------------------------- */

/* Does node n overwrite all of root r without reading it (copy_, fill_ or
 * zero_ of r itself, r's memory read by no other argument)? */
static bool overwrites(const pt_node *n, int32_t r, const int32_t *root) {
    if (n->op != PETREL_OP_COPY_ && n->op != PETREL_OP_FILL__SCALAR && n->op != PETREL_OP_FILL__TENSOR &&
        n->op != PETREL_OP_ZERO_)
        return false;
    if (tensor_arg(n, 0) != r) return false;
    for (int a = 1; a < n->nargs; a++)
        for (int k = 0; k < n->args[a].n; k++)
            if (n->args[a].items[k].vid >= 0 && root[n->args[a].items[k].vid] == r) return false;
    return true;
}

/* Is root r's memory, as node i leaves it, unobservable by a later run:
 * made by this run, or a buffer fully overwritten by its first access,
 * no later than i? */
static bool run_private(const st_pass *p, int32_t r, int32_t i) {
    const pt_value *v = &p->g->values[r];
    if (v->src == PT_SRC_NODE) return true;
    int32_t f = p->first[r];
    return v->src == PT_SRC_BUFFER && f >= 0 && f <= i && overwrites(&p->g->nodes[f], r, p->root);
}

/* Unmark (p->live) the in-place writes whose memory no live node touches
 * later and no later run observes. */
static void mark_dead_writes(st_pass *p) {
    pt_graph *g = p->g;
    for (int32_t v = 0; v < g->nvalues; v++) p->first[v] = -1;
    for (int32_t i = g->nnodes - 1; i >= 0; i--) {
        const pt_node *n = &g->nodes[i];
        for (int a = 0; p->live[i] && a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) p->first[p->root[n->args[a].items[k].vid]] = i;
    }
    /* backwards; mark = roots a live node touches after the current one */
    memset(p->mark, 0, (size_t)g->nvalues * sizeof *p->mark);
    for (int32_t i = g->nnodes - 1; i >= 0; i--) {
        const pt_node *n = &g->nodes[i];
        if (!p->live[i]) continue;
        unsigned fl = pt_op_table[n->op].flags;
        int32_t x = tensor_arg(n, 0);
        if ((fl & PT_OPF_INPLACE) && !(fl & PT_OPF_STATE) && x >= 0) {
            int32_t r = p->root[x];
            /* its result is r's memory too, so nothing live reads it */
            if (!p->obs[r] && !p->mark[r] && run_private(p, r, i)) {
                p->live[i] = false;
                continue;
            }
        }
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) p->mark[p->root[n->args[a].items[k].vid]] = true;
    }
}

/* ---- 3. buffers read only for their shape (core-ATen form) --------------- */

/* Does node n read its argument a only for its shape and dtype? */
static bool reads_meta_only(const pt_node *n, int a) {
    switch (n->op) {
    case PETREL_OP_COPY:
    case PETREL_OP_FILL_SCALAR:
    case PETREL_OP_FILL_TENSOR:
    case PETREL_OP_ZEROS_LIKE:
    case PETREL_OP_ONES_LIKE:
    case PETREL_OP_FULL_LIKE:
    case PETREL_OP_EMPTY_LIKE:
    case PETREL_OP_SYM_SIZE:
    case PETREL_OP_SYM_NUMEL: return a == 0;
    default: return false;
    }
}

/* Is buffer b's content never read: no result, no stored value, and every
 * node argument holding it reads only its shape? */
static bool content_unread(const pt_graph *g, int32_t b) {
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid == b) return false;
    for (int32_t i = 0; i < g->nmuts; i++)
        if (g->muts[i].value_vid == b) return false;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid == b && !reads_meta_only(n, a)) return false;
    }
    return true;
}

static void drop_unread_mutations(pt_graph *g) {
    int32_t w = 0;
    for (int32_t i = 0; i < g->nmuts; i++)
        if (!content_unread(g, g->muts[i].buffer_vid)) g->muts[w++] = g->muts[i];
    g->nmuts = w;
}

int pc_forward_state(pt_graph *g) {
    drop_unread_mutations(g);
    int removed = 0;
    for (;;) {
        st_pass p;
        if (!pass_init(&p, g)) break;
        pc_find_roots(g, p.root);
        find_observed(g, p.root, p.obs);
        int changed = 0;
        for (int32_t f = 0; f < g->nnodes; f++) {
            int32_t x, s;
            if (copy_fact(g, p.root, f, &x, &s)) changed += forward_copy(&p, f, x, s);
        }
        /* liveness after forwarding (redirected reads are gone); a dead
         * write's result may still be read by dead code, which goes too */
        if (pc_mark_live(g, p.live)) {
            mark_dead_writes(&p);
            for (int32_t i = 0; i < g->nnodes; i++) p.dead[i] = !p.live[i];
            int n = pc_remove_nodes(g, p.dead);
            removed += n;
            changed += n;
        }
        pass_free(&p);
        if (!changed) break;
    }
    return removed;
}
