/*
** exec.c -- the executor behind petrel_program_execute, and the pk_* kernel
** interface.  Node by node: resolve the kernel (once, at init), run it,
** apply in-place semantics, verify the produced shapes against the export
** record, and release values after their last use.  Buffers (KV caches)
** live in persistent private storage, so state carries across calls
** exactly as torch's module buffers do.
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../backends/cpu/cpu.h"
#include "exec.h"

/* ---- storage ------------------------------------------------------------ */

/* Largest weight made of zeros when the archive stored no bytes for it. */
#define PT_MAX_ZERO_FILL ((int64_t)1 << 30)

pt_storage *pt_storage_new(int64_t nbytes) {
    pt_storage *s = pt_calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t n = (size_t)(nbytes > 0 ? nbytes : 1);
    s->raw = pt_malloc(n + 64);
    if (!s->raw) {
        pt_free(s);
        return NULL;
    }
    /* 64-byte alignment keeps vector loads happy in the fast paths */
    s->data = (uint8_t *)(((uintptr_t)s->raw + 63) & ~(uintptr_t)63);
    s->refs = 1;
    s->owned = true;
    s->nbytes = nbytes;
    return s;
}

void pt_storage_release(pt_storage *s) {
    if (!s || s->is_static) return;
    if (--s->refs > 0) return;
    if (s->owned) pt_free(s->raw);
    pt_free(s);
}

static void release_value(pt_rvalue *v) {
    if (v->kind == PT_V_TENSOR) pt_storage_release(v->t.storage);
    memset(v, 0, sizeof *v);
    v->kind = PT_V_NONE;
}

/* Describe a row-major tensor over storage `s` (from its start). */
static void set_contiguous(pt_tensor *t, petrel_dtype dt, int rank, const int64_t *shape, pt_storage *s) {
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    int64_t st = 1;
    for (int i = rank - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = st;
        st *= shape[i] > 0 ? shape[i] : 1;
    }
    t->storage = s;
    t->data = s->data;
}

/* A contiguous tensor over fresh storage. */
static petrel_status new_tensor(pt_tensor *t, petrel_dtype dt, int rank, const int64_t *shape, pt_err *err) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || !pt_mul_ok(n, shape[i], &n))
            return pt_fail(err, PETREL_ERR_SHAPE, "tensor size overflows or is negative");
    }
    int64_t bytes;
    if (!pt_mul_ok(n, (int64_t)petrel_dtype_size(dt), &bytes) || bytes > ((int64_t)1 << 46))
        return pt_fail(err, PETREL_ERR_NOMEM, "tensor of %" PRId64 " elements is too large", n);
    pt_storage *s = pt_storage_new(bytes);
    if (!s) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory allocating %" PRId64 " bytes", bytes);
    set_contiguous(t, dt, rank, shape, s);
    return PETREL_OK;
}

/* ---- init --------------------------------------------------------------- */

static void mark_use(pt_exec *ex, int32_t vid, int32_t node) {
    if (vid >= 0 && ex->last_use[vid] != INT32_MAX && ex->last_use[vid] < node) ex->last_use[vid] = node;
}

/* Materialize a weight value as a tensor view over the mapped archive. */
static void weight_view(const pt_value *v, pt_tensor *t, pt_storage *s) {
    memset(t, 0, sizeof *t);
    t->dtype = v->dtype;
    t->rank = v->rank;
    for (int i = 0; i < v->rank; i++) {
        t->shape[i] = v->shape[i].lit;
        t->stride[i] = v->strides[i];
    }
    t->storage = s;
    t->data = s->data + v->storage_offset * (int64_t)petrel_dtype_size(v->dtype);
}

petrel_status pt_exec_init(pt_exec *ex, const pt_graph *g, pt_err *err) {
    memset(ex, 0, sizeof *ex);
    ex->g = g;
    ex->err = err;
    size_t nv = (size_t)(g->nvalues ? g->nvalues : 1);
    ex->vals = pt_calloc(nv, sizeof *ex->vals);
    ex->last_use = pt_calloc(nv, sizeof *ex->last_use);
    ex->kernels = pt_calloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof *ex->kernels);
    ex->symv = pt_calloc((size_t)(g->nsyms ? g->nsyms : 1), sizeof *ex->symv);
    ex->state = pt_calloc(nv, sizeof *ex->state);
    ex->input_set = pt_calloc((size_t)(g->ninputs ? g->ninputs : 1), sizeof *ex->input_set);
    if (!ex->vals || !ex->last_use || !ex->kernels || !ex->symv || !ex->state ||
        !ex->input_set) {
        pt_exec_free(ex);
        return pt_fail(err, PETREL_ERR_NOMEM, "out of memory preparing the program");
    }
    for (int32_t i = 0; i < g->nvalues; i++) {
        ex->last_use[i] = -1;
        ex->vals[i].kind = PT_V_NONE;
    }
    /* activation arena: one allocation for every planned intermediate */
    petrel_status pst = pt_plan_memory(g, &ex->plan, err);
    if (pst != PETREL_OK) {
        pt_exec_free(ex);
        return pst;
    }
    ex->astor = pt_calloc(nv, sizeof *ex->astor);
    ex->arena_raw = pt_malloc((size_t)ex->plan.arena_bytes + 64);
    if (!ex->astor || !ex->arena_raw) goto nomem;
    ex->arena = (uint8_t *)(((uintptr_t)ex->arena_raw + 63) & ~(uintptr_t)63);
    for (int32_t i = 0; i < g->nvalues; i++) {
        if (ex->plan.offset[i] < 0) continue;
        ex->astor[i] = (pt_storage){.refs = 1, .is_static = true, .data = ex->arena + ex->plan.offset[i],
                                    .nbytes = ex->plan.size[i]};
    }
    /* values that must survive the whole run */
    for (int32_t i = 0; i < g->nvalues; i++)
        if (g->values[i].src != PT_SRC_NODE) ex->last_use[i] = INT32_MAX;
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) ex->last_use[g->outputs[i].item.vid] = INT32_MAX;
    for (int32_t i = 0; i < g->nmuts; i++) ex->last_use[g->muts[i].value_vid] = INT32_MAX;
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        ex->kernels[ni] = cpu_kernel(n->op);
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++) mark_use(ex, n->args[a].items[k].vid, ni);
        for (int k = 0; k < n->nout; k++)
            if (n->outs[k] >= 0) mark_use(ex, n->outs[k], ni);
    }
    /* Weights: views over the mapping (a zero-filled storage when the
     * archive held an empty file).  Buffers: private, persistent copies. */
    for (int32_t i = 0; i < g->nvalues; i++) {
        const pt_value *v = &g->values[i];
        if (v->src != PT_SRC_PARAM && v->src != PT_SRC_CONST && v->src != PT_SRC_BUFFER) continue;
        pt_storage *s;
        if (v->data) {
            s = pt_calloc(1, sizeof *s);
            if (!s) goto nomem;
            s->refs = 1;
            s->owned = false;
            s->data = (uint8_t *)v->data; /* never written: weights are read-only views */
            s->nbytes = v->data_bytes;
        } else {
            /* torch stores fake/empty storages as 0-byte files and loads
             * zeros; the size then comes from the metadata alone, so it is
             * bounded here rather than trusted */
            int64_t n = 1, b = 0;
            bool ok = true;
            for (int d = 0; ok && d < v->rank; d++) ok = pt_mul_ok(n, v->shape[d].lit, &n);
            ok = ok && pt_add_ok(n, v->storage_offset, &n) && pt_mul_ok(n, (int64_t)petrel_dtype_size(v->dtype), &b);
            if (!ok || b > PT_MAX_ZERO_FILL) {
                pt_exec_free(ex);
                return pt_fail(err, PETREL_ERR_FORMAT, "'%s' has no stored bytes and a size too large to fill with zeros",
                               v->fqn ? v->fqn : v->name);
            }
            s = pt_storage_new(b);
            if (!s) goto nomem;
            memset(s->data, 0, (size_t)b);
        }
        pt_tensor w;
        weight_view(v, &w, s);
        if (v->src != PT_SRC_BUFFER) {
            ex->vals[i].kind = PT_V_TENSOR;
            ex->vals[i].t = w;
            continue;
        }
        /* buffer: a contiguous private copy (the load-time values stay in
         * the mapping, where a reset reads them again) */
        int64_t shape[PETREL_MAX_RANK];
        for (int d = 0; d < v->rank; d++) shape[d] = v->shape[d].lit;
        pt_tensor st = {0};
        petrel_status e1 = new_tensor(&st, v->dtype, v->rank, shape, err);
        if (e1 != PETREL_OK) { pt_storage_release(s); pt_exec_free(ex); return e1; }
        pt_copy_into(&st, &w);
        pt_storage_release(s);
        ex->state[i] = st;
        ex->vals[i].kind = PT_V_TENSOR;
        ex->vals[i].t = st;
        st.storage->refs++; /* the state slot's own reference */
    }
    return PETREL_OK;
nomem:
    pt_exec_free(ex);
    return pt_fail(err, PETREL_ERR_NOMEM, "out of memory mapping weights");
}

void pt_exec_free(pt_exec *ex) {
    if (!ex || !ex->g) return;
    const pt_graph *g = ex->g;
    if (ex->vals)
        for (int32_t i = 0; i < g->nvalues; i++) release_value(&ex->vals[i]);
    if (ex->state)
        for (int32_t i = 0; i < g->nvalues; i++) pt_storage_release(ex->state[i].storage);
    for (int32_t i = 0; i < ex->nspill; i++) pt_free(ex->spill[i]);
    pt_free(ex->spill);
    pt_free(ex->scr);
    pt_free(ex->arena_raw);
    pt_free(ex->astor);
    pt_plan_free(&ex->plan);
    pt_free(ex->vals);
    pt_free(ex->last_use);
    pt_free(ex->kernels);
    pt_free(ex->symv);
    pt_free(ex->state);
    pt_free(ex->input_set);
    memset(ex, 0, sizeof *ex);
}

/* ---- inputs ------------------------------------------------------------- */

static void format_shape(char *buf, size_t cap, int rank, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

petrel_status pt_exec_set_input(pt_exec *ex, int i, const petrel_tensor_desc *t) {
    const pt_graph *g = ex->g;
    if (i < 0 || i >= g->ninputs) return pt_fail(ex->err, PETREL_ERR_INVALID_ARG, "input index %d out of range", i);
    int32_t vid = g->inputs[i];
    const pt_value *v = &g->values[vid];
    if (v->kind != PT_V_TENSOR) {
        if (t->rank != 0 || petrel_tensor_numel(t) != 1)
            return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s' is a scalar; got a rank-%d tensor", v->name, t->rank);
        double f = pt_load_f64(t->data, t->dtype);
        int64_t iv = pt_load_i64(t->data, t->dtype);
        return pt_exec_set_input_scalar(ex, i, iv, f);
    }
    if (!pt_dtype_valid((int)t->dtype) || t->dtype != v->dtype)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s' must be %s, got %s", v->name,
                       petrel_dtype_name(v->dtype), petrel_dtype_name(t->dtype));
    if (t->rank != v->rank)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s' must have rank %d, got %d", v->name, v->rank, t->rank);
    for (int d = 0; d < v->rank; d++) {
        int64_t got = t->shape[d];
        const pt_dim *dim = &v->shape[d];
        if (got < 0) return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s': negative size", v->name);
        if (!dim->expr) {
            if (got != dim->lit)
                return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s': size %d must be %" PRId64 ", got %" PRId64,
                               v->name, d, dim->lit, got);
        } else if (dim->expr->kind == PT_EXPR_SYM) {
            const pt_symbol *s = &g->syms[dim->expr->sym];
            if (got < s->min || got > s->max)
                return pt_fail(ex->err, PETREL_ERR_SHAPE,
                               "input '%s': size %d is %" PRId64 ", outside the exported range [%" PRId64 ", %" PRId64 "]",
                               v->name, d, got, s->min, s->max == INT64_MAX ? INT64_MAX : s->max);
        }
    }
    pt_tensor nt = {0};
    PT_TRY(new_tensor(&nt, t->dtype, t->rank, t->shape, ex->err));
    memcpy(nt.data, t->data, (size_t)(pt_numel(&nt) * (int64_t)petrel_dtype_size(t->dtype)));
    release_value(&ex->vals[vid]);
    ex->vals[vid].kind = PT_V_TENSOR;
    ex->vals[vid].t = nt;
    ex->input_set[i] = true;
    return PETREL_OK;
}

petrel_status pt_exec_set_input_scalar(pt_exec *ex, int i, int64_t iv, double fv) {
    const pt_graph *g = ex->g;
    if (i < 0 || i >= g->ninputs) return pt_fail(ex->err, PETREL_ERR_INVALID_ARG, "input index %d out of range", i);
    int32_t vid = g->inputs[i];
    const pt_value *v = &g->values[vid];
    if (v->kind == PT_V_TENSOR)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s' is a tensor, not a scalar", v->name);
    release_value(&ex->vals[vid]);
    ex->vals[vid].kind = v->kind;
    ex->vals[vid].i = v->kind == PT_V_BOOL ? (iv != 0) : iv;
    ex->vals[vid].f = v->kind == PT_V_FLOAT ? fv : (double)iv;
    ex->input_set[i] = true;
    return PETREL_OK;
}

/* Bind symbols from the user inputs' sizes (bare-symbol dims only) and
 * check that each symbol gets one value. */
static petrel_status bind_symbols(pt_exec *ex) {
    const pt_graph *g = ex->g;
    for (int32_t s = 0; s < g->nsyms; s++) ex->symv[s] = INT64_MIN;
    for (int32_t i = 0; i < g->ninputs; i++) {
        int32_t vid = g->inputs[i];
        const pt_value *v = &g->values[vid];
        if (v->kind != PT_V_TENSOR) continue;
        for (int d = 0; d < v->rank; d++) {
            const pt_expr *e = v->shape[d].expr;
            if (!e || e->kind != PT_EXPR_SYM) continue;
            int64_t got = ex->vals[vid].t.shape[d];
            if (ex->symv[e->sym] != INT64_MIN && ex->symv[e->sym] != got)
                return pt_fail(ex->err, PETREL_ERR_SHAPE,
                               "input '%s': size %d is %" PRId64 " but another input fixed %s = %" PRId64,
                               v->name, d, got, g->syms[e->sym].name, ex->symv[e->sym]);
            ex->symv[e->sym] = got;
        }
    }
    /* derived input dims (e.g. 2*s0) must agree with the bound symbols */
    for (int32_t i = 0; i < g->ninputs; i++) {
        int32_t vid = g->inputs[i];
        const pt_value *v = &g->values[vid];
        if (v->kind != PT_V_TENSOR) continue;
        for (int d = 0; d < v->rank; d++) {
            const pt_expr *e = v->shape[d].expr;
            int64_t want;
            if (!e || e->kind == PT_EXPR_SYM || !pt_expr_eval(e, ex->symv, &want)) continue;
            if (want != ex->vals[vid].t.shape[d])
                return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s': size %d must be %" PRId64 " to match the other inputs, got %" PRId64,
                               v->name, d, want, ex->vals[vid].t.shape[d]);
        }
    }
    return PETREL_OK;
}

/* ---- run ---------------------------------------------------------------- */

/* The produced value must match the exported meta (dtype, rank, sizes). */
static petrel_status check_output(pt_exec *ex, const pt_node *n, int32_t vid) {
    const pt_value *v = &ex->g->values[vid];
    const pt_rvalue *r = &ex->vals[vid];
    if (v->kind != PT_V_TENSOR) {
        if (r->kind == PT_V_NONE)
            return pt_fail(ex->err, PETREL_ERR_RUNTIME, "kernel produced no value for '%s'", v->name);
        return PETREL_OK;
    }
    if (r->kind != PT_V_TENSOR)
        return pt_fail(ex->err, PETREL_ERR_RUNTIME, "kernel produced no tensor for '%s'", v->name);
    const pt_tensor *t = &r->t;
    bool ok = t->dtype == v->dtype && t->rank == v->rank;
    for (int d = 0; ok && d < v->rank; d++) {
        const pt_dim *dim = &v->shape[d];
        int64_t want;
        if (!dim->expr) want = dim->lit;
        else if (dim->expr->kind == PT_EXPR_SYM && ex->symv[dim->expr->sym] == INT64_MIN) {
            ex->symv[dim->expr->sym] = t->shape[d]; /* data-dependent size: learn it */
            continue;
        } else if (!pt_expr_eval(dim->expr, ex->symv, &want)) continue;
        ok = t->shape[d] == want;
    }
    if (ok) return PETREL_OK;
    char got[160], exp[160];
    int64_t es[PETREL_MAX_RANK];
    for (int d = 0; d < v->rank; d++) {
        es[d] = v->shape[d].lit;
        if (v->shape[d].expr && !pt_expr_eval(v->shape[d].expr, ex->symv, &es[d])) es[d] = -1;
    }
    format_shape(got, sizeof got, t->rank, t->shape);
    format_shape(exp, sizeof exp, v->rank, es);
    return pt_fail(ex->err, PETREL_ERR_RUNTIME, "'%s' came out %s %s, but the export recorded %s %s", v->name,
                   petrel_dtype_name(t->dtype), got, petrel_dtype_name(v->dtype), exp);
}

/* End of a node: drop overflow blocks, and grow the bump region once if
 * this node needed more, so the next call fits without allocating. */
static void free_scratch(pt_exec *ex) {
    for (int32_t i = 0; i < ex->nspill; i++) pt_free(ex->spill[i]);
    ex->nspill = 0;
    if (ex->scr_need > ex->scr_cap) {
        uint8_t *n = pt_malloc(ex->scr_need);
        if (n) { /* on failure keep the old region: the next call spills again */
            pt_free(ex->scr);
            ex->scr = n;
            ex->scr_cap = ex->scr_need;
        }
    }
    ex->scr_used = 0;
    ex->scr_need = 0;
}

static petrel_status run_node(pt_exec *ex, int32_t ni) {
    const pt_graph *g = ex->g;
    const pt_node *n = &g->nodes[ni];
    ex->oom = false;
    petrel_status st = ex->kernels[ni](ex, n);
    free_scratch(ex);
    /* a kernel sees a failed scratch allocation as a missing (or empty)
     * argument; whatever it returned, report what really happened */
    if (ex->oom) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory");
    if (st != PETREL_OK) return st;
    if ((pt_op_table[n->op].flags & PT_OPF_INPLACE) && n->nout > 0 && n->outs[0] >= 0) {
        /* the kernel computed the functional result; write it into self */
        const pt_tensor *self = pk_tensor(ex, n, 0);
        pt_rvalue *o = &ex->vals[n->outs[0]];
        if (!self || o->kind != PT_V_TENSOR)
            return pt_fail(ex->err, PETREL_ERR_RUNTIME, "in-place op without a tensor result");
        pt_tensor src;
        if (!pt_broadcast_to(&o->t, self->rank, self->shape, &src))
            return pt_fail(ex->err, PETREL_ERR_SHAPE, "in-place result does not fit its target");
        pt_copy_into(self, &src);
        pt_storage_release(o->t.storage);
        o->t = *self;
        o->t.storage->refs++;
    }
    for (int k = 0; k < n->nout; k++)
        if (n->outs[k] >= 0) PT_TRY(check_output(ex, n, n->outs[k]));
    /* release what this node was the last to read (and unused outputs) */
    for (int a = 0; a < n->nargs; a++)
        for (int k = 0; k < n->args[a].n; k++) {
            int32_t vid = n->args[a].items[k].vid;
            if (vid >= 0 && ex->last_use[vid] == ni) release_value(&ex->vals[vid]);
        }
    for (int k = 0; k < n->nout; k++) {
        int32_t vid = n->outs[k];
        if (vid >= 0 && ex->last_use[vid] == ni) release_value(&ex->vals[vid]);
    }
    return PETREL_OK;
}

petrel_status pt_exec_run(pt_exec *ex) {
    const pt_graph *g = ex->g;
    for (int32_t i = 0; i < g->ninputs; i++)
        if (!ex->input_set[i])
            return pt_fail(ex->err, PETREL_ERR_STATE, "input '%s' was not set", g->values[g->inputs[i]].name);
    /* drop the previous run's outputs; re-bind state */
    for (int32_t i = 0; i < g->nvalues; i++) {
        if (g->values[i].src == PT_SRC_NODE) release_value(&ex->vals[i]);
        if (g->values[i].src == PT_SRC_BUFFER && ex->vals[i].t.data != ex->state[i].data) {
            release_value(&ex->vals[i]);
            ex->vals[i].kind = PT_V_TENSOR;
            ex->vals[i].t = ex->state[i];
            ex->state[i].storage->refs++;
        }
    }
    PT_TRY(bind_symbols(ex));
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        petrel_status st = run_node(ex, ni);
        if (st != PETREL_OK) {
            char m[sizeof ex->err->msg];
            snprintf(m, sizeof m, "%s", ex->err->msg);
            return pt_fail(ex->err, st, "node %d '%s' (%s): %s", ni, g->nodes[ni].name,
                           pt_op_table[g->nodes[ni].op].target, m);
        }
    }
    /* functional-form state updates: copy each mutation into its buffer */
    for (int32_t i = 0; i < g->nmuts; i++) {
        const pt_rvalue *src = &ex->vals[g->muts[i].value_vid];
        const pt_tensor *dst = &ex->state[g->muts[i].buffer_vid];
        pt_tensor b;
        if (src->kind != PT_V_TENSOR || !pt_broadcast_to(&src->t, dst->rank, dst->shape, &b))
            return pt_fail(ex->err, PETREL_ERR_RUNTIME, "buffer update of '%s' has the wrong shape",
                           g->values[g->muts[i].buffer_vid].fqn);
        if (b.data != dst->data) pt_copy_into(dst, &b);
    }
    ex->ran = true;
    return PETREL_OK;
}

petrel_status pt_exec_reset_state(pt_exec *ex) {
    const pt_graph *g = ex->g;
    for (int32_t i = 0; i < g->nvalues; i++) {
        const pt_value *v = &g->values[i];
        if (v->src != PT_SRC_BUFFER) continue;
        if (!v->data) { /* stored as an empty file: zeros */
            memset(ex->state[i].data, 0, (size_t)(pt_numel(&ex->state[i]) * (int64_t)pt_elsize(&ex->state[i])));
            continue;
        }
        pt_storage src = {.refs = 1, .is_static = true, .data = (uint8_t *)v->data, .nbytes = v->data_bytes};
        pt_tensor w;
        weight_view(v, &w, &src);
        pt_copy_into(&ex->state[i], &w);
    }
    return PETREL_OK;
}

const pt_rvalue *pt_exec_output(pt_exec *ex, int i, pt_rvalue *tmp) {
    const pt_user_output *o = &ex->g->outputs[i];
    if (o->item.vid >= 0) return &ex->vals[o->item.vid];
    memset(tmp, 0, sizeof *tmp);
    tmp->kind = o->kind;
    tmp->i = o->item.i;
    tmp->f = o->kind == PT_V_FLOAT ? o->item.f : (double)o->item.i;
    return tmp;
}

/* ---- the pk_* kernel interface ------------------------------------------ */

static const pt_arg *arg_at(const pt_node *n, int a) { return &n->args[a]; }

static const pt_rvalue *item_val(pt_exec *ex, const pt_item *it) { return &ex->vals[it->vid]; }

bool pk_is_none(pt_exec *ex, const pt_node *n, int a) {
    (void)ex;
    return a >= n->nargs || arg_at(n, a)->kind == PT_ARG_NONE;
}

/* A Python number passed where the schema wants a Tensor (torch wraps it as
 * a 0-d double/int64/bool tensor) becomes a 0-d tensor in node scratch. */
static const pt_tensor *wrapped_scalar(pt_exec *ex, const pt_arg *g) {
    struct wrapped {
        pt_tensor t;
        pt_storage s;
        union { double f; int64_t i; uint8_t b; } v;
    } *w = pk_scratch(ex, sizeof *w);
    if (!w) return NULL;
    const pt_item *it = &g->items[0];
    const pt_rvalue *rv = it->vid >= 0 ? &ex->vals[it->vid] : NULL;
    bool is_f = rv ? rv->kind == PT_V_FLOAT : g->kind == PT_ARG_FLOAT;
    bool is_b = rv ? rv->kind == PT_V_BOOL : g->kind == PT_ARG_BOOL;
    if (is_f) {
        w->t.dtype = PETREL_DTYPE_F64;
        w->v.f = rv ? rv->f : it->f;
    } else if (is_b) {
        w->t.dtype = PETREL_DTYPE_BOOL;
        w->v.b = (uint8_t)((rv ? rv->i : it->i) != 0);
    } else {
        w->t.dtype = PETREL_DTYPE_I64;
        w->v.i = rv ? rv->i : it->i;
    }
    w->s.refs = 1;
    w->s.is_static = true; /* never freed through refcounting: scratch owns it */
    w->s.data = (uint8_t *)&w->v;
    w->s.nbytes = 8;
    w->t.rank = 0;
    w->t.data = (uint8_t *)&w->v;
    w->t.storage = &w->s;
    return &w->t;
}

const pt_tensor *pk_tensor(pt_exec *ex, const pt_node *n, int a) {
    if (a >= n->nargs) return NULL;
    const pt_arg *g = arg_at(n, a);
    if ((g->kind == PT_ARG_INT || g->kind == PT_ARG_FLOAT || g->kind == PT_ARG_BOOL) && g->n == 1)
        return wrapped_scalar(ex, g);
    if (g->kind != PT_ARG_TENSOR) return NULL;
    const pt_rvalue *v = item_val(ex, &g->items[0]);
    return v->kind == PT_V_TENSOR ? &v->t : NULL;
}

const pt_tensor **pk_tensors(pt_exec *ex, const pt_node *n, int a, int *count) {
    *count = 0;
    if (a >= n->nargs) return NULL;
    const pt_arg *g = arg_at(n, a);
    if (g->kind != PT_ARG_TENSORS) return NULL;
    const pt_tensor **out = pk_scratch(ex, (size_t)(g->n ? g->n : 1) * sizeof *out);
    if (!out) return NULL;
    for (int i = 0; i < g->n; i++) {
        const pt_item *it = &g->items[i];
        out[i] = (it->vid >= 0 && ex->vals[it->vid].kind == PT_V_TENSOR) ? &ex->vals[it->vid].t : NULL;
    }
    *count = g->n;
    return out;
}

/* One scalar item as double / int64, following the referenced value. */
static double item_f(pt_exec *ex, const pt_arg *g, const pt_item *it) {
    if (it->vid < 0) return g->kind == PT_ARG_FLOAT || g->kind == PT_ARG_FLOATS ? it->f : (double)it->i;
    const pt_rvalue *v = item_val(ex, it);
    return v->kind == PT_V_FLOAT ? v->f : (double)v->i;
}

static int64_t item_i(pt_exec *ex, const pt_arg *g, const pt_item *it) {
    if (it->vid < 0) return g->kind == PT_ARG_FLOAT || g->kind == PT_ARG_FLOATS ? (int64_t)it->f : it->i;
    const pt_rvalue *v = item_val(ex, it);
    return v->kind == PT_V_FLOAT ? (int64_t)v->f : v->i;
}

int64_t pk_int(pt_exec *ex, const pt_node *n, int a) {
    if (a >= n->nargs) return 0;
    const pt_arg *g = arg_at(n, a);
    return g->n > 0 ? item_i(ex, g, &g->items[0]) : 0;
}

int pk_ints(pt_exec *ex, const pt_node *n, int a, int64_t *out, int max) {
    if (a >= n->nargs) return 0;
    const pt_arg *g = arg_at(n, a);
    if (g->kind == PT_ARG_NONE) return 0;
    int cnt = g->n;
    if (g->fixed_len > 1 && cnt == 1) {
        /* "int[2] stride=1": one value stands for all */
        int64_t v = item_i(ex, g, &g->items[0]);
        int k = g->fixed_len < max ? g->fixed_len : max;
        for (int i = 0; i < k; i++) out[i] = v;
        return k;
    }
    if (cnt > max) cnt = max;
    for (int i = 0; i < cnt; i++) out[i] = item_i(ex, g, &g->items[i]);
    return cnt;
}

double pk_float(pt_exec *ex, const pt_node *n, int a) {
    if (a >= n->nargs) return 0;
    const pt_arg *g = arg_at(n, a);
    return g->n > 0 ? item_f(ex, g, &g->items[0]) : 0;
}

bool pk_scalar_is_int(pt_exec *ex, const pt_node *n, int a) {
    if (a >= n->nargs) return false;
    const pt_arg *g = arg_at(n, a);
    if (g->n == 0) return false;
    if (g->items[0].vid >= 0) return item_val(ex, &g->items[0])->kind != PT_V_FLOAT;
    return g->kind == PT_ARG_INT || g->kind == PT_ARG_BOOL;
}

bool pk_bool(pt_exec *ex, const pt_node *n, int a) { return pk_int(ex, n, a) != 0; }

const char *pk_str(pt_exec *ex, const pt_node *n, int a) {
    (void)ex;
    if (a >= n->nargs || arg_at(n, a)->kind != PT_ARG_STRING) return NULL;
    return arg_at(n, a)->str;
}

int pk_dtype(pt_exec *ex, const pt_node *n, int a) {
    (void)ex;
    if (a >= n->nargs || arg_at(n, a)->kind != PT_ARG_DTYPE) return -1;
    return (int)arg_at(n, a)->items[0].i;
}

petrel_dtype pk_out_dtype(pt_exec *ex, const pt_node *n, int k) {
    if (k >= n->nout || n->outs[k] < 0) return PETREL_DTYPE_F32;
    return ex->g->values[n->outs[k]].dtype;
}

static petrel_status out_slot(pt_exec *ex, const pt_node *n, int k, pt_rvalue **slot) {
    if (k < 0 || k >= n->nout || n->outs[k] < 0)
        return pt_fail(ex->err, PETREL_ERR_RUNTIME, "kernel wrote output %d, which the node does not have", k);
    *slot = &ex->vals[n->outs[k]];
    release_value(*slot);
    return PETREL_OK;
}

petrel_status pk_out_alloc_dtype(pt_exec *ex, const pt_node *n, int k, petrel_dtype dt, int rank,
                                 const int64_t *shape, pt_tensor **out) {
    pt_rvalue *slot = NULL;
    PT_TRY(out_slot(ex, n, k, &slot));
    if (rank < 0 || rank > PETREL_MAX_RANK)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "rank %d is not supported", rank);
    int32_t vid = n->outs[k];
    int64_t numel = 1, bytes = -1;
    bool ok = true;
    for (int i = 0; i < rank; i++) ok = ok && shape[i] >= 0 && pt_mul_ok(numel, shape[i], &numel);
    if (ok && !pt_mul_ok(numel, (int64_t)petrel_dtype_size(dt), &bytes)) bytes = -1;
    if (bytes >= 0 && ex->plan.offset[vid] >= 0 && bytes <= ex->plan.size[vid]) {
        /* the planned arena slot: no allocation */
        set_contiguous(&slot->t, dt, rank, shape, &ex->astor[vid]);
    } else {
        PT_TRY(new_tensor(&slot->t, dt, rank, shape, ex->err));
    }
    slot->kind = PT_V_TENSOR;
    *out = &slot->t;
    return PETREL_OK;
}

petrel_status pk_out_alloc(pt_exec *ex, const pt_node *n, int k, int rank, const int64_t *shape,
                           pt_tensor **out) {
    return pk_out_alloc_dtype(ex, n, k, pk_out_dtype(ex, n, k), rank, shape, out);
}

petrel_status pk_out_view(pt_exec *ex, const pt_node *n, int k, const pt_tensor *base, petrel_dtype dt,
                          int rank, const int64_t *shape, const int64_t *stride, uint8_t *data) {
    if (rank < 0 || rank > PETREL_MAX_RANK)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "rank %d is not supported", rank);
    pt_storage *s = base->storage;
    s->refs++; /* taken before out_slot: base may be this very slot */
    pt_rvalue *slot = NULL;
    petrel_status st = out_slot(ex, n, k, &slot);
    if (st != PETREL_OK) {
        pt_storage_release(s);
        return st;
    }
    slot->kind = PT_V_TENSOR;
    pt_tensor *t = &slot->t;
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
    }
    t->data = data;
    t->storage = s;
    return PETREL_OK;
}

static pt_rvalue *scalar_slot(pt_exec *ex, const pt_node *n, int k) {
    pt_rvalue *slot = NULL;
    if (out_slot(ex, n, k, &slot) != PETREL_OK) return NULL;
    return slot;
}

void pk_out_int(pt_exec *ex, const pt_node *n, int k, int64_t v) {
    pt_rvalue *s = scalar_slot(ex, n, k);
    if (s) { s->kind = PT_V_INT; s->i = v; s->f = (double)v; }
}

void pk_out_float(pt_exec *ex, const pt_node *n, int k, double v) {
    pt_rvalue *s = scalar_slot(ex, n, k);
    if (s) { s->kind = PT_V_FLOAT; s->f = v; s->i = (int64_t)v; }
}

void pk_out_bool(pt_exec *ex, const pt_node *n, int k, bool v) {
    pt_rvalue *s = scalar_slot(ex, n, k);
    if (s) { s->kind = PT_V_BOOL; s->i = v; s->f = v; }
}

void *pk_scratch(pt_exec *ex, size_t nbytes) {
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    ex->scr_need += n;
    if (ex->scr_used + n <= ex->scr_cap) {
        void *p = ex->scr + ex->scr_used;
        ex->scr_used += n;
        memset(p, 0, nbytes); /* kernels get zeroed scratch, as from calloc */
        return p;
    }
    /* overflow: a temporary block until the node ends */
    if (ex->nspill == ex->cap_spill) {
        int32_t cap = ex->cap_spill ? ex->cap_spill * 2 : 16;
        void **ns = pt_realloc(ex->spill, (size_t)cap * sizeof *ns);
        if (!ns) {
            ex->oom = true;
            return NULL;
        }
        ex->spill = ns;
        ex->cap_spill = cap;
    }
    void *p = pt_calloc(1, n);
    if (p) ex->spill[ex->nspill++] = p;
    else ex->oom = true;
    return p;
}

petrel_status pk_fail(pt_exec *ex, petrel_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pt_vfail(ex->err, st, fmt, ap);
    va_end(ap);
    return st;
}
