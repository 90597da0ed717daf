/*
** fold.c -- constant folding: a pure node that reads only program
** constants (PARAM/CONST values with data, state buffers that nothing
** writes) and literals, and whose results
** have static shapes, is evaluated at compile time; its result becomes a
** CONST value and the node is removed.  Folding follows the graph order,
** so a chain of such nodes (the rotary inv_freq's unsqueeze -> cast ->
** expand) folds whole.
**
** Route: the compiler may not include runtime headers, and the CPU kernels
** run only inside the runtime's executor (pt_exec), so the pass cannot call
** them.  It evaluates a small set of ops itself, with the kernels' exact
** arithmetic (core's pt_load/pt_store conversions, double for float
** results and int64 for integer ones, rounded once):
**
**   - casts and copies (to, _to_copy, clone, lift_fresh_copy), as
**     pt_copy_into converts;
**   - arange, full, zeros, ones with literal arguments, as cpu/ops/create.c;
**   - add, sub, mul of integer operands into an integer result (position
**     arithmetic), in wrapping int64 as cpu/ops/binary.c; float arithmetic
**     stays with the kernels (its operand rounding, bin_round_dtype, is
**     theirs to define);
**   - unsqueeze, slice, expand and view/reshape of a contiguous constant:
**     these compute nothing, so the result is a view of the same bytes
**     (new strides, no copy; the writer stores a shared storage once).
**
** Never folded: ops with effects (PT_OPF_INPLACE, PT_OPF_STATE), anything
** reading a user input, a written buffer, a node result or a symbolic size,
** results the graph returns or that a write could reach (argument 0 of an
** in-place op, a written argument of a state op, a buffer mutation), and
** computed results over FOLD_MAX_BYTES (the file would grow).  Computed
** bytes are owned by the caller's pc_dtype_result blobs (the compiler's
** one list of new weight bytes), freed by pc_dtype_free after the program
** is written.  Layer: compiler.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compiler.h"

#define FOLD_MAX_BYTES ((int64_t)1 << 20)

/* ---- what may fold --------------------------------------------------------- */

/* A constant: a weight, or a state buffer nothing ever writes (the
 * rotary inv_freq), which holds its load-time value in every run. */
static bool is_const(const pt_graph *g, int32_t v, const bool *exposed) {
    const pt_value *x = &g->values[v];
    if (x->kind != PT_V_TENSOR || !x->data) return false;
    return x->src == PT_SRC_PARAM || x->src == PT_SRC_CONST || (x->src == PT_SRC_BUFFER && !exposed[v]);
}

/* Every value n reads is a constant tensor (no user input, written
 * buffer, node result or symbolic scalar); literals are items without a
 * value. */
static bool reads_only_constants(const pt_graph *g, const pt_node *n, const bool *exposed) {
    for (int a = 0; a < n->nargs; a++)
        for (int k = 0; k < n->args[a].n; k++) {
            int32_t v = n->args[a].items[k].vid;
            if (v >= 0 && !is_const(g, v, exposed)) return false;
        }
    return true;
}

static bool static_shape(const pt_value *v) {
    for (int d = 0; d < v->rank; d++)
        if (v->shape[d].expr) return false;
    return true;
}

static int64_t numel(const pt_value *v) {
    int64_t n = 1;
    for (int d = 0; d < v->rank; d++) n *= v->shape[d].lit;
    return n;
}

/* Values a write may reach or the caller sees: graph results, buffer
 * mutations (both sides), argument 0 of in-place ops and the written
 * arguments of state ops, and what those view.  A constant must stay
 * read-only, so these never fold, and such a buffer is no constant. */
static void mark_exposed(const pt_graph *g, bool *exposed) {
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) exposed[g->outputs[i].item.vid] = true;
    for (int32_t i = 0; i < g->nmuts; i++) {
        exposed[g->muts[i].value_vid] = true;
        exposed[g->muts[i].buffer_vid] = true;
    }
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        unsigned fl = pt_op_table[n->op].flags;
        for (int a = 0; a < n->nargs; a++) {
            bool written = ((fl & PT_OPF_INPLACE) && a == 0) || (fl & PT_OPF_STATE);
            for (int k = 0; written && k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) exposed[n->args[a].items[k].vid] = true;
        }
    }
    /* a write through a view reaches what it views */
    for (int32_t i = g->nnodes - 1; i >= 0; i--) {
        const pt_node *n = &g->nodes[i];
        bool hit = false;
        for (int k = 0; k < n->nout; k++) hit |= n->outs[k] >= 0 && exposed[n->outs[k]];
        if (hit && (pt_op_table[n->op].flags & PT_OPF_VIEW) && n->nargs && n->args[0].kind == PT_ARG_TENSOR)
            exposed[n->args[0].items[0].vid] = true;
    }
}

/* ---- evaluation -------------------------------------------------------------- */

/* Element i (row-major over v's shape) of a constant. */
static const uint8_t *elem(const pt_value *v, int64_t i) {
    int64_t off = v->storage_offset;
    for (int d = v->rank - 1; d >= 0; d--) {
        off += (i % v->shape[d].lit) * v->strides[d];
        i /= v->shape[d].lit;
    }
    return v->data + off * (int64_t)petrel_dtype_size(v->dtype);
}

/* A literal Scalar argument as the kernels read it (pk_float,
 * ew_scalar_i64); callers check is_lit first. */
static bool is_lit(const pt_arg *a) {
    return (a->kind == PT_ARG_INT || a->kind == PT_ARG_FLOAT || a->kind == PT_ARG_BOOL) && a->n == 1 &&
           a->items[0].vid < 0;
}
static double lit_f(const pt_arg *a) {
    return a->kind == PT_ARG_INT || a->kind == PT_ARG_BOOL ? (double)a->items[0].i : a->items[0].f;
}
static int64_t lit_i(const pt_arg *a) {
    if (a->kind == PT_ARG_INT || a->kind == PT_ARG_BOOL) return a->items[0].i;
    double v = a->items[0].f;
    return v >= -9223372036854775808.0 && v < 9223372036854775808.0 ? (int64_t)v : INT64_MIN;
}

/* The contiguous row-major strides of v's recorded shape. */
static void contiguous(const pt_value *v, int64_t *st) {
    int64_t s = 1;
    for (int d = v->rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= v->shape[d].lit;
    }
}

/* The view ops: out (recorded shape) as strides over x's bytes.  False
 * when the view is not a plain restriding of x. */
static bool fold_view(const pt_node *n, const pt_value *x, pt_value *out) {
    int64_t st[PETREL_MAX_RANK];
    if (out->dtype != x->dtype) return false;
    switch (n->op) {
    case PETREL_OP_VIEW:
    case PETREL_OP_UNSAFE_VIEW:
    case PETREL_OP_RESHAPE:
        contiguous(x, st);
        for (int d = 0; d < x->rank; d++)
            if (x->shape[d].lit != 1 && x->strides[d] != st[d]) return false;
        if (numel(x) != numel(out)) return false;
        contiguous(out, out->strides);
        return true;
    case PETREL_OP_UNSQUEEZE: {
        int64_t d = n->args[1].items[0].i;
        if (d < 0) d += x->rank + 1;
        if (out->rank != x->rank + 1 || d < 0 || d > x->rank) return false;
        for (int k = 0, j = 0; k < out->rank; k++) {
            if (k == d) {
                out->strides[k] = d < x->rank ? x->strides[d] * x->shape[d].lit : 1;
                continue;
            }
            if (out->shape[k].lit != x->shape[j].lit) return false;
            out->strides[k] = x->strides[j++];
        }
        return true;
    }
    case PETREL_OP_EXPAND: {
        int lead = out->rank - x->rank;
        if (lead < 0) return false;
        for (int k = 0; k < out->rank; k++) {
            int j = k - lead;
            if (j < 0) out->strides[k] = 0;
            else if (x->shape[j].lit == out->shape[k].lit) out->strides[k] = x->strides[j];
            else if (x->shape[j].lit == 1) out->strides[k] = 0;
            else return false;
        }
        return true;
    }
    case PETREL_OP_SLICE: {
        int64_t d = n->args[1].items[0].i, step = n->args[4].items[0].i;
        if (d < 0) d += x->rank;
        if (out->rank != x->rank || d < 0 || d >= x->rank || step < 1) return false;
        int64_t size = x->shape[d].lit;
        int64_t start = n->args[2].kind == PT_ARG_NONE ? 0 : n->args[2].items[0].i;
        int64_t end = n->args[3].kind == PT_ARG_NONE ? size : n->args[3].items[0].i;
        start = start < 0 ? start + size : start;
        end = end < 0 ? end + size : end;
        start = start < 0 ? 0 : start > size ? size : start;
        end = end < start ? start : end > size ? size : end;
        for (int k = 0; k < x->rank; k++)
            if (out->shape[k].lit != (k == d ? (end - start + step - 1) / step : x->shape[k].lit)) return false;
        memcpy(out->strides, x->strides, sizeof out->strides);
        out->strides[d] = x->strides[d] * step;
        out->storage_offset = x->storage_offset + start * x->strides[d];
        return true;
    }
    default: return false;
    }
}

/* The length arange(start, end, step) gives for dtype dt, as create.c
 * computes it; -1 when the kernel would fail. */
static int64_t arange_len(petrel_dtype dt, double fs, double fe, double fst, int64_t is, int64_t ie, int64_t ist) {
    if (dt == PETREL_DTYPE_I64) {
        if (ist == 0 || !((ist > 0 && ie >= is) || (ist < 0 && ie <= is))) return -1;
        return (ie - is + ist - (ist > 0 ? 1 : -1)) / ist;
    }
    if (fst == 0 || !isfinite(fs) || !isfinite(fe) || !((fst > 0 && fe >= fs) || (fst < 0 && fe <= fs))) return -1;
    double size_d = ceil((fe - fs) / fst);
    return size_d >= 0 && size_d < 9.2e18 ? (int64_t)size_d : -1;
}

/* Operand a of an integer binary op at output element i: an integer
 * tensor broadcast to out's shape, or an integer literal.  False for
 * anything else (float operands round as bin_round_dtype says; those stay
 * with the kernels). */
static bool int_operand(const pt_graph *g, const pt_arg *a, const pt_value *out, int64_t i, int64_t *r) {
    if (a->kind == PT_ARG_INT || a->kind == PT_ARG_BOOL) return *r = a->items[0].i, true;
    if (a->kind != PT_ARG_TENSOR) return false;
    const pt_value *x = &g->values[a->items[0].vid];
    if (pt_dtype_is_float(x->dtype) || x->rank > out->rank) return false;
    int64_t off = x->storage_offset;
    for (int d = out->rank - 1; d >= 0; d--) {
        int j = d - (out->rank - x->rank);
        int64_t c = i % out->shape[d].lit;
        i /= out->shape[d].lit;
        if (j < 0 || x->shape[j].lit == 1) continue;
        if (x->shape[j].lit != out->shape[d].lit) return false;
        off += c * x->strides[j];
    }
    *r = pt_load_i64(x->data + off * (int64_t)petrel_dtype_size(x->dtype), x->dtype);
    return true;
}

/* add/sub/mul with integer operands and an integer result, in wrapping
 * int64 as the kernels compute them. */
static bool fold_int_binary(const pt_graph *g, const pt_node *n, const pt_value *out, uint8_t *buf) {
    petrel_dtype dt = out->dtype;
    if (pt_dtype_is_float(dt) || dt == PETREL_DTYPE_BOOL) return false;
    int64_t alpha = 1;
    if (n->op != PETREL_OP_MUL_TENSOR && n->op != PETREL_OP_MUL_SCALAR) {
        if (n->args[2].kind != PT_ARG_INT) return false;
        alpha = n->args[2].items[0].i;
    }
    bool sub = n->op == PETREL_OP_SUB_TENSOR || n->op == PETREL_OP_SUB_SCALAR;
    bool mul = n->op == PETREL_OP_MUL_TENSOR || n->op == PETREL_OP_MUL_SCALAR;
    size_t es = petrel_dtype_size(dt);
    for (int64_t i = 0, cnt = numel(out); i < cnt; i++) {
        int64_t a, b;
        if (!int_operand(g, &n->args[0], out, i, &a) || !int_operand(g, &n->args[1], out, i, &b)) return false;
        uint64_t ab = (uint64_t)alpha * (uint64_t)b;
        int64_t v = (int64_t)(mul ? (uint64_t)a * (uint64_t)b : sub ? (uint64_t)a - ab : (uint64_t)a + ab);
        pt_store_i64(buf + i * es, dt, v);
    }
    return true;
}

/* Compute the result of a cast or creation node into buf (out's recorded
 * shape, contiguous).  False for an op this pass does not evaluate. */
static bool fold_compute(const pt_graph *g, const pt_node *n, const pt_value *out, uint8_t *buf) {
    petrel_dtype dt = out->dtype;
    size_t es = petrel_dtype_size(dt);
    int64_t cnt = numel(out);
    bool fl = pt_dtype_is_float(dt);
    switch (n->op) {
    case PETREL_OP_CLONE:
    case PETREL_OP_TO_COPY:
    case PETREL_OP_TO_DTYPE:
    case PETREL_OP_TO_DTYPE_LAYOUT:
    case PETREL_OP_TO_DEVICE:
    case PETREL_OP_LIFT_FRESH_COPY: {
        const pt_value *x = &g->values[n->args[0].items[0].vid];
        if (x->rank != out->rank) return false;
        for (int d = 0; d < x->rank; d++)
            if (x->shape[d].lit != out->shape[d].lit) return false;
        bool f = fl || pt_dtype_is_float(x->dtype);
        for (int64_t i = 0; i < cnt; i++) {
            const uint8_t *s = elem(x, i);
            if (f) pt_store_f64(buf + i * es, dt, pt_load_f64(s, x->dtype));
            else pt_store_i64(buf + i * es, dt, pt_load_i64(s, x->dtype));
        }
        return true;
    }
    case PETREL_OP_FULL:
    case PETREL_OP_ZEROS:
    case PETREL_OP_ONES: {
        if (n->op == PETREL_OP_FULL && !is_lit(&n->args[1])) return false;
        double fv = n->op == PETREL_OP_FULL ? lit_f(&n->args[1]) : n->op == PETREL_OP_ONES;
        int64_t iv = n->op == PETREL_OP_FULL ? lit_i(&n->args[1]) : n->op == PETREL_OP_ONES;
        for (int64_t i = 0; i < cnt; i++) {
            if (fl) pt_store_f64(buf + i * es, dt, fv);
            else if (dt == PETREL_DTYPE_BOOL) pt_store_i64(buf + i * es, dt, fv != 0);
            else pt_store_i64(buf + i * es, dt, iv);
        }
        return true;
    }
    case PETREL_OP_ARANGE:
    case PETREL_OP_ARANGE_START:
    case PETREL_OP_ARANGE_START_STEP: {
        int a_start = n->op == PETREL_OP_ARANGE ? -1 : 0, a_end = n->op == PETREL_OP_ARANGE ? 0 : 1;
        int a_step = n->op == PETREL_OP_ARANGE_START_STEP ? 2 : -1;
        if ((a_start >= 0 && !is_lit(&n->args[a_start])) || !is_lit(&n->args[a_end]) ||
            (a_step >= 0 && !is_lit(&n->args[a_step])))
            return false;
        double fs = a_start >= 0 ? lit_f(&n->args[a_start]) : 0, fe = lit_f(&n->args[a_end]);
        double fst = a_step >= 0 ? lit_f(&n->args[a_step]) : 1;
        int64_t is = a_start >= 0 ? lit_i(&n->args[a_start]) : 0, ie = lit_i(&n->args[a_end]);
        int64_t ist = a_step >= 0 ? lit_i(&n->args[a_step]) : 1;
        if (out->rank != 1 || arange_len(dt, fs, fe, fst, is, ie, ist) != cnt) return false;
        for (int64_t i = 0; i < cnt; i++) {
            if (fl) pt_store_f64(buf + i * es, dt, fs + fst * (double)i);
            else pt_store_i64(buf + i * es, dt, (int64_t)((uint64_t)is + (uint64_t)ist * (uint64_t)i));
        }
        return true;
    }
    case PETREL_OP_ADD_TENSOR:
    case PETREL_OP_ADD_SCALAR:
    case PETREL_OP_SUB_TENSOR:
    case PETREL_OP_SUB_SCALAR:
    case PETREL_OP_MUL_TENSOR:
    case PETREL_OP_MUL_SCALAR:
        return fold_int_binary(g, n, out, buf);
    default: return false;
    }
}

/* ---- the pass ------------------------------------------------------------------ */

/* Keep buf alive in own's blobs.  False when memory ran out. */
static bool own_blob(pc_dtype_result *own, void *buf) {
    void **b = pt_realloc(own->blobs, (size_t)(own->nblobs + 1) * sizeof *b);
    if (!b) return false;
    own->blobs = b;
    b[own->nblobs++] = buf;
    return true;
}

/* Fold node n into its (single) result, which becomes a CONST value.
 * Returns 1 when folded, 0 when not, -1 when memory ran out.  A view
 * shares its source's bytes, also a never-written buffer's (the runtime's
 * private copy of it and the mapped bytes hold the same values forever). */
static int fold_node(pt_graph *g, const pt_node *n, const bool *exposed, pc_dtype_result *own) {
    unsigned fl = pt_op_table[n->op].flags;
    if ((fl & (PT_OPF_INPLACE | PT_OPF_STATE)) || n->nout != 1 || n->outs[0] < 0) return 0;
    pt_value *out = &g->values[n->outs[0]];
    if (out->kind != PT_V_TENSOR || exposed[n->outs[0]] || !static_shape(out) ||
        !reads_only_constants(g, n, exposed))
        return 0;
    pt_value r = *out;
    const pt_value *x = NULL;
    if (fl & PT_OPF_VIEW) {
        if (n->args[0].kind != PT_ARG_TENSOR) return 0;
        x = &g->values[n->args[0].items[0].vid];
        r.storage_offset = x->storage_offset;
        if (!fold_view(n, x, &r)) return 0;
        r.data = x->data;
        r.data_bytes = x->data_bytes;
    }
    if (!x) { /* computed: new bytes */
        size_t es = petrel_dtype_size(out->dtype);
        int64_t cnt = numel(out);
        if (cnt * (int64_t)es > FOLD_MAX_BYTES) return 0;
        uint8_t *buf = pt_malloc((size_t)(cnt ? cnt * (int64_t)es : 1));
        if (!buf) return -1;
        if (!fold_compute(g, n, out, buf)) {
            pt_free(buf);
            return 0;
        }
        if (!own_blob(own, buf)) {
            pt_free(buf);
            return -1;
        }
        r.data = buf;
        r.data_bytes = cnt * (int64_t)es;
        r.storage_offset = 0;
        contiguous(out, r.strides);
    }
    char fqn[512];
    snprintf(fqn, sizeof fqn, "_folded.%s", out->name);
    r.fqn = pt_strdup(fqn);
    if (!r.fqn) return -1;
    pt_free(out->fqn);
    r.src = PT_SRC_CONST;
    *out = r;
    return 1;
}

int pc_fold(pt_graph *g, pc_dtype_result *own) {
    bool *exposed = pt_calloc((size_t)(g->nvalues ? g->nvalues : 1), sizeof *exposed);
    bool *dead = pt_calloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof *dead);
    int folded = 0;
    if (exposed && dead) {
        mark_exposed(g, exposed);
        for (int32_t i = 0; i < g->nnodes; i++) {
            int f = fold_node(g, &g->nodes[i], exposed, own);
            if (f < 0) break;
            dead[i] = f > 0;
        }
        folded = pc_remove_nodes(g, dead);
    }
    pt_free(exposed);
    pt_free(dead);
    return folded;
}
