/*
** verify.c -- structural verifier for the graph IR, run on every graph
** before it executes (after import and after loading a program file):
** ids in range, kinds consistent with the op schemas, every value defined
** exactly once and before its first use, weights with static shapes.  The
** executor then trusts the graph.
*/
#include <string.h>

#include "ir.h"

#define BAD(...) pt_fail(err, PETREL_ERR_FORMAT, __VA_ARGS__)

/* May an argument of this kind fill a schema slot of type `t`? */
static bool arg_fits(const pt_arg *a, const pt_schema_arg *s) {
    if (a->kind == PT_ARG_NONE) return true; /* kernels treat None as absent */
    switch (s->type) {
    case PT_ST_TENSOR:
        /* torch passes Python numbers for Tensor arguments ("wrapped numbers") */
        return a->kind == PT_ARG_TENSOR || ((a->kind == PT_ARG_INT || a->kind == PT_ARG_FLOAT || a->kind == PT_ARG_BOOL) && a->n == 1);
    case PT_ST_TENSOR_LIST:
    case PT_ST_OPT_TENSOR_LIST: return a->kind == PT_ARG_TENSORS;
    case PT_ST_INT:
    case PT_ST_FLOAT:
    case PT_ST_BOOL:
    case PT_ST_SCALAR:
        return (a->kind == PT_ARG_INT || a->kind == PT_ARG_FLOAT || a->kind == PT_ARG_BOOL) && a->n == 1;
    case PT_ST_INT_LIST:
    case PT_ST_FLOAT_LIST:
    case PT_ST_BOOL_LIST:
        return a->kind == PT_ARG_INTS || a->kind == PT_ARG_FLOATS || a->kind == PT_ARG_BOOLS ||
               ((a->kind == PT_ARG_INT || a->kind == PT_ARG_BOOL) && a->n == 1);
    case PT_ST_STR: return a->kind == PT_ARG_STRING && a->str;
    case PT_ST_DTYPE: return a->kind == PT_ARG_DTYPE && a->n == 1 && pt_dtype_valid((int)a->items[0].i);
    case PT_ST_OTHER: return a->kind == PT_ARG_OTHER;
    case PT_STYPE_COUNT: break;
    }
    return false;
}

static petrel_status verify_expr(const pt_graph *g, const pt_expr *e, int depth, pt_err *err) {
    if (!e || depth > 64) return BAD("symbolic size: expression missing or nested too deeply");
    if ((unsigned)e->kind >= PT_EXPR_KIND_COUNT) return BAD("symbolic size: bad expression kind %d", (int)e->kind);
    if (e->kind == PT_EXPR_SYM && (e->sym < 0 || e->sym >= g->nsyms))
        return BAD("symbolic size: symbol %d out of range", e->sym);
    if (e->kind == PT_EXPR_RATIONAL && e->q == 0) return BAD("symbolic size: zero denominator");
    if (e->nkids < 0 || (e->nkids > 0 && !e->kids)) return BAD("symbolic size: bad argument list");
    /* arity per kind: the evaluator indexes kids without checking */
    int want_min = 0, want_max = 0;
    switch (e->kind) {
    case PT_EXPR_ADD: case PT_EXPR_MUL: case PT_EXPR_MAX: case PT_EXPR_MIN: want_min = 1, want_max = 16; break;
    case PT_EXPR_POW: case PT_EXPR_FLOORDIV: case PT_EXPR_MOD: case PT_EXPR_CEILDIV: want_min = want_max = 2; break;
    default: break; /* literals, symbols, unknown: no arguments */
    }
    if (e->nkids < want_min || e->nkids > want_max)
        return BAD("symbolic size: %d arguments for expression kind %d", e->nkids, (int)e->kind);
    for (int i = 0; i < e->nkids; i++) PT_TRY(verify_expr(g, e->kids[i], depth + 1, err));
    return PETREL_OK;
}

petrel_status pt_graph_verify(const pt_graph *g, pt_err *err) {
    if (g->nvalues < 0 || g->nnodes < 0 || g->ninputs < 0 || g->noutputs < 0 || g->nmuts < 0 || g->nsyms < 0)
        return BAD("graph: negative count");
    /* where each value is defined: -1 input/weight, node index, INT32_MAX none */
    int32_t *def = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *def);
    if (!def) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory verifying the graph");
    petrel_status st = PETREL_OK;
    for (int32_t i = 0; i < g->nvalues && st == PETREL_OK; i++) {
        const pt_value *v = &g->values[i];
        def[i] = INT32_MAX;
        if (!v->name) st = BAD("value %d has no name", i);
        else if ((unsigned)v->kind >= PT_V_KIND_COUNT || (unsigned)v->src >= PT_VSRC_COUNT)
            st = BAD("value '%s': bad kind or source", v->name);
        else if (v->kind == PT_V_TENSOR && (!pt_dtype_valid((int)v->dtype) || v->rank < 0 || v->rank > PETREL_MAX_RANK))
            st = BAD("value '%s': bad dtype or rank", v->name);
        for (int d = 0; st == PETREL_OK && v->kind == PT_V_TENSOR && d < v->rank; d++) {
            if (v->shape[d].expr) st = verify_expr(g, v->shape[d].expr, 0, err);
            else if (v->shape[d].lit < 0) st = BAD("value '%s': negative size", v->name);
        }
        if (st != PETREL_OK) break;
        if (v->src == PT_SRC_PARAM || v->src == PT_SRC_CONST || v->src == PT_SRC_BUFFER) {
            if (v->kind != PT_V_TENSOR) { st = BAD("weight '%s' is not a tensor", v->name); break; }
            for (int d = 0; d < v->rank; d++)
                if (v->shape[d].expr || v->strides[d] < 0) st = BAD("weight '%s': symbolic size or negative stride", v->name);
            if (v->storage_offset < 0) st = BAD("weight '%s': negative offset", v->name);
            def[i] = -1;
        } else if (v->src == PT_SRC_USER_INPUT || v->src == PT_SRC_LITERAL) {
            def[i] = -1;
        }
    }
    for (int32_t i = 0; st == PETREL_OK && i < g->ninputs; i++) {
        int32_t v = g->inputs[i];
        if (v < 0 || v >= g->nvalues || g->values[v].src != PT_SRC_USER_INPUT) st = BAD("user input %d: bad value id", i);
    }
    for (int32_t ni = 0; st == PETREL_OK && ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        if ((unsigned)n->op >= PETREL_OP_COUNT) { st = BAD("node %d: bad op id", ni); break; }
        pt_schema sc;
        if (!pt_schema_parse(pt_op_table[n->op].schema, &sc) || n->nargs != sc.nargs || (n->nargs && !n->args)) {
            st = BAD("node %d (%s): expected %d arguments, has %d", ni, pt_op_table[n->op].target, sc.nargs, n->nargs);
            break;
        }
        for (int a = 0; st == PETREL_OK && a < n->nargs; a++) {
            const pt_arg *arg = &n->args[a];
            if ((unsigned)arg->kind >= PT_ARG_KIND_COUNT || arg->n < 0 || (arg->n && !arg->items) ||
                !arg_fits(arg, &sc.args[a])) {
                st = BAD("node %d (%s): argument '%s' has the wrong kind", ni, pt_op_table[n->op].target, sc.args[a].name);
                break;
            }
            for (int k = 0; k < arg->n; k++) {
                int32_t v = arg->items[k].vid;
                if (v < 0) {
                    if (arg->kind == PT_ARG_TENSOR) st = BAD("node %d (%s): tensor argument without a value", ni, pt_op_table[n->op].target);
                    continue;
                }
                if (v >= g->nvalues) { st = BAD("node %d (%s): value id %d out of range", ni, pt_op_table[n->op].target, v); break; }
                if (def[v] >= ni) { st = BAD("node %d (%s): reads '%s' before it is defined", ni, pt_op_table[n->op].target, g->values[v].name); break; }
                bool want_tensor = arg->kind == PT_ARG_TENSOR || arg->kind == PT_ARG_TENSORS;
                if (want_tensor != (g->values[v].kind == PT_V_TENSOR)) {
                    st = BAD("node %d (%s): '%s' has the wrong kind", ni, pt_op_table[n->op].target, g->values[v].name);
                    break;
                }
            }
            /* ops that write state in place may only write buffers (never
             * the read-only mapped weights, never another node's result) */
            if (st == PETREL_OK && (pt_op_table[n->op].flags & PT_OPF_STATE) && sc.args[a].writes &&
                (arg->kind != PT_ARG_TENSOR || arg->n != 1 || arg->items[0].vid < 0 ||
                 g->values[arg->items[0].vid].src != PT_SRC_BUFFER))
                st = BAD("node %d (%s): argument '%s' must be a state buffer", ni, pt_op_table[n->op].target, sc.args[a].name);
        }
        if (st != PETREL_OK) break;
        if (n->nout < 0 || (n->nout && !n->outs)) { st = BAD("node %d: bad outputs", ni); break; }
        for (int k = 0; k < n->nout; k++) {
            int32_t v = n->outs[k];
            if (v < 0) continue;
            if (v >= g->nvalues) { st = BAD("node %d: output id out of range", ni); break; }
            if (def[v] != INT32_MAX) { st = BAD("node %d: '%s' is defined twice", ni, g->values[v].name); break; }
            def[v] = ni;
        }
    }
    for (int32_t i = 0; st == PETREL_OK && i < g->noutputs; i++) {
        int32_t v = g->outputs[i].item.vid;
        if (v >= g->nvalues || (v >= 0 && def[v] == INT32_MAX) || (v < 0 && g->outputs[i].kind == PT_V_TENSOR) ||
            (unsigned)g->outputs[i].kind >= PT_V_KIND_COUNT)
            st = BAD("output %d: bad or undefined value", i);
    }
    for (int32_t i = 0; st == PETREL_OK && i < g->nmuts; i++) {
        int32_t b = g->muts[i].buffer_vid, v = g->muts[i].value_vid;
        if (b < 0 || b >= g->nvalues || v < 0 || v >= g->nvalues || g->values[b].src != PT_SRC_BUFFER ||
            g->values[v].kind != PT_V_TENSOR || def[v] == INT32_MAX)
            st = BAD("buffer mutation %d: bad value ids", i);
    }
    pt_free(def);
    return st;
}
