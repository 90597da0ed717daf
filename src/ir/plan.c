/*
** plan.c -- activation memory planning: every tensor a node produces gets
** a slot (offset, size) in one arena, sized for the largest shape the
** program accepts (symbols at the top of their exported ranges), with
** slots whose lifetimes do not overlap sharing memory.  Lifetimes follow
** aliasing: a view or an in-place result keeps the memory of everything it
** may alias alive until its own last use.  Shared by the compiler (it
** reports the plan) and the runtime (it executes within it).
*/
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#define ALIGN 64
/* A slot larger than this, or past the arena cap, is left to the heap: a
 * dynamic dimension exported with a huge upper bound must not make every
 * load reserve memory for the largest possible call. */
#define MAX_SLOT ((int64_t)512 << 20)
#define MAX_ARENA ((int64_t)2 << 30)

static int32_t find(int32_t *parent, int32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/* Upper bound of a value's bytes; -1 when it has no finite bound. */
static int64_t max_bytes(const pt_graph *g, const pt_value *v, const int64_t *symmax) {
    int64_t n = 1;
    for (int d = 0; d < v->rank; d++) {
        int64_t s = v->shape[d].lit;
        if (v->shape[d].expr && !pt_expr_eval(v->shape[d].expr, symmax, &s)) return -1;
        if (s < 0 || !pt_mul_ok(n, s, &n)) return -1;
    }
    int64_t b;
    if (!pt_mul_ok(n, (int64_t)petrel_dtype_size(v->dtype), &b)) return -1;
    (void)g;
    return b;
}

typedef struct slot {
    int32_t vid;
    int32_t start, end; /* node indices, inclusive */
    int64_t size;
} slot;

typedef struct range {
    int64_t off, size;
} range;

static int by_offset(const void *a, const void *b) {
    const range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static int by_size_desc(const void *a, const void *b) {
    const slot *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->vid - y->vid;
}

petrel_status pt_plan_memory(const pt_graph *g, pt_plan *plan, pt_err *err) {
    return pt_plan_memory_on(g, NULL, 0, plan, err);
}

petrel_status pt_plan_memory_on(const pt_graph *g, const uint8_t *value_dev, int dev, pt_plan *plan, pt_err *err) {
    memset(plan, 0, sizeof *plan);
    int32_t nv = g->nvalues ? g->nvalues : 1;
    plan->offset = pt_malloc((size_t)nv * sizeof *plan->offset);
    plan->size = pt_calloc((size_t)nv, sizeof *plan->size);
    int32_t *def = pt_malloc((size_t)nv * sizeof *def), *last = pt_malloc((size_t)nv * sizeof *last);
    int32_t *parent = pt_malloc((size_t)nv * sizeof *parent), *group_end = pt_malloc((size_t)nv * sizeof *group_end);
    int64_t *symmax = pt_malloc((size_t)(g->nsyms ? g->nsyms : 1) * sizeof *symmax);
    slot *slots = pt_malloc((size_t)nv * sizeof *slots);
    int32_t *placed = pt_malloc((size_t)nv * sizeof *placed);
    range *busy = pt_malloc((size_t)nv * sizeof *busy);
    petrel_status st = PETREL_OK;
    if (!plan->offset || !plan->size || !def || !last || !parent || !group_end || !symmax || !slots || !placed || !busy) {
        st = pt_fail(err, PETREL_ERR_NOMEM, "out of memory planning activations");
        goto out;
    }
    for (int32_t s = 0; s < g->nsyms; s++) symmax[s] = g->syms[s].max == INT64_MAX ? INT64_MIN : g->syms[s].max;
    for (int32_t i = 0; i < g->nvalues; i++) {
        plan->offset[i] = -1;
        def[i] = -1;
        last[i] = -1;
        parent[i] = i;
    }
    /* definitions, last uses, alias groups */
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++) {
                int32_t v = n->args[a].items[k].vid;
                if (v >= 0) last[v] = ni;
            }
        for (int k = 0; k < n->nout; k++)
            if (n->outs[k] >= 0) {
                def[n->outs[k]] = ni;
                if (last[n->outs[k]] < ni) last[n->outs[k]] = ni;
            }
        unsigned fl = pt_op_table[n->op].flags;
        if ((fl & (PT_OPF_VIEW | PT_OPF_INPLACE)) && n->nargs > 0 && n->args[0].kind == PT_ARG_TENSOR &&
            n->args[0].items[0].vid >= 0) {
            int32_t base = find(parent, n->args[0].items[0].vid);
            for (int k = 0; k < n->nout; k++)
                if (n->outs[k] >= 0) parent[find(parent, n->outs[k])] = base;
        }
    }
    /* results must survive until the next call */
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) last[g->outputs[i].item.vid] = INT32_MAX;
    for (int32_t i = 0; i < g->nmuts; i++) last[g->muts[i].value_vid] = INT32_MAX;
    for (int32_t i = 0; i < g->nvalues; i++) group_end[i] = -1;
    for (int32_t i = 0; i < g->nvalues; i++) {
        int32_t r = find(parent, i);
        if (last[i] > group_end[r]) group_end[r] = last[i];
    }
    int32_t ns = 0;
    for (int32_t i = 0; i < g->nvalues; i++) {
        const pt_value *v = &g->values[i];
        if (v->src != PT_SRC_NODE || v->kind != PT_V_TENSOR || def[i] < 0) continue;
        if (value_dev && value_dev[i] != dev) continue;
        int64_t b = max_bytes(g, v, symmax);
        if (b < 0 || b > MAX_SLOT) {
            plan->unplanned++;
            continue;
        }
        int64_t sz = (b + ALIGN - 1) / ALIGN * ALIGN;
        if (sz == 0) sz = ALIGN;
        plan->size[i] = sz;
        plan->naive_bytes += sz;
        slots[ns++] = (slot){i, def[i], group_end[find(parent, i)], sz};
    }
    /* greedy by size: biggest first, lowest offset that fits beside every
     * already placed slot whose lifetime overlaps */
    qsort(slots, (size_t)ns, sizeof *slots, by_size_desc);
    int32_t np = 0;
    for (int32_t s = 0; s < ns; s++) {
        slot *c = &slots[s];
        /* the placed slots live at the same time, ordered by offset */
        int32_t nb = 0;
        for (int32_t k = 0; k < np; k++) {
            const slot *o = &slots[placed[k]];
            if (o->end < c->start || c->end < o->start) continue;
            busy[nb++] = (range){plan->offset[o->vid], o->size};
        }
        qsort(busy, (size_t)nb, sizeof *busy, by_offset);
        int64_t off = 0;
        for (int32_t k = 0; k < nb; k++) {
            if (busy[k].off >= off + c->size) break; /* the gap before it fits */
            if (busy[k].off + busy[k].size > off) off = busy[k].off + busy[k].size;
        }
        if (off + c->size > MAX_ARENA) { /* over the cap: this one goes to the heap */
            plan->size[c->vid] = 0;
            plan->unplanned++;
            continue;
        }
        plan->offset[c->vid] = off;
        if (off + c->size > plan->arena_bytes) plan->arena_bytes = off + c->size;
        placed[np++] = s;
    }
out:
    pt_free(def);
    pt_free(last);
    pt_free(parent);
    pt_free(group_end);
    pt_free(symmax);
    pt_free(slots);
    pt_free(placed);
    pt_free(busy);
    if (st != PETREL_OK) pt_plan_free(plan);
    return st;
}

void pt_plan_free(pt_plan *plan) {
    if (!plan) return;
    pt_free(plan->offset);
    pt_free(plan->size);
    memset(plan, 0, sizeof *plan);
}
