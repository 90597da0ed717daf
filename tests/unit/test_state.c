/*
** test_state.c -- the state passes (src/compiler/state.c), white-box.
** 1. Every tiny LLM (tests/fixtures/llm and the fixture suite's, both export
**    forms) compiles to a program where no node touches a position counter
**    (an integer buffer: StaticCache's cumulative_length) and no mutation
**    stores one, every fused attention writes its cache at one shared
**    position tensor add(arange(T), cache_position[0]), and one arange(T)
**    is left; the counts before (import, no-ops, fusion, DCE) and after are
**    printed.  That the programs compute what torch did is the fixture
**    suite's job, across decode calls test_generate's.
** 2. Hand-built graphs run twice (state carries over between calls) before
**    and after the passes and compared exactly: the StaticCache pattern
**    (the passes fire, also with a broadcasting copy_), and the cases where
**    they must not: a buffer read before its overwrite, an overwrite of
**    part of a buffer, a dtype-changing copy_, a write between the
**    overwrite and the read, a view taken before such a write, a broadcast
**    that would change type promotion.
** 3. CSE merges identical pure nodes, but not twins with a write to their
**    input in between, nor uninitialized memory, dropout or attention
**    with dropout.
** 4. Out of memory at any allocation of either pass leaves a valid graph.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compiler.h"
#include "format/format.h"
#include "petrel.h"
#include "pt2/pt2.h"

static const char *out_path = "build-test-state.petrel";
#include "check.h"
#include "graph_util.h"

static int count_op(const pt_graph *g, pt_op op) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++) c += g->nodes[i].op == op;
    return c;
}

static bool reads(const pt_node *n, int32_t v) {
    for (int a = 0; a < n->nargs; a++)
        for (int k = 0; k < n->args[a].n; k++)
            if (n->args[a].items[k].vid == v) return true;
    return false;
}

static const pt_node *def_of(const pt_graph *g, int32_t v) {
    for (int32_t i = 0; i < g->nnodes; i++)
        for (int k = 0; k < g->nodes[i].nout; k++)
            if (g->nodes[i].outs[k] == v) return &g->nodes[i];
    return NULL;
}

/* ---- 1. the LLM fixtures ----------------------------------------------------- */

static bool import(const char *path, pt_mapping *map, pz_archive *z, pt_graph *g) {
    pt_err err = {{0}};
    memset(g, 0, sizeof *g);
    if (pt_map_file(map, path, &err) != PETREL_OK) return false;
    if (pz_open_memory(z, map->data, map->size, &err) != PETREL_OK || pt2_import(g, z, &err) != PETREL_OK) {
        printf("%s: %s\n", path, err.msg);
        pt_unmap_file(map);
        return false;
    }
    return true;
}

static void close_import(pt_mapping *map, pz_archive *z, pt_graph *g) {
    pt_graph_free(g);
    pz_close(z);
    pt_unmap_file(map);
}

typedef struct counts {
    int nodes, arange, add, add_, copy, muts;
} counts;

static counts count(const pt_graph *g) {
    counts c = {g->nnodes, 0, 0, 0, 0, g->nmuts};
    c.arange = count_op(g, PETREL_OP_ARANGE) + count_op(g, PETREL_OP_ARANGE_START) +
               count_op(g, PETREL_OP_ARANGE_START_STEP);
    c.add = count_op(g, PETREL_OP_ADD_TENSOR);
    c.add_ = count_op(g, PETREL_OP_ADD__TENSOR) + count_op(g, PETREL_OP_ADD__SCALAR);
    c.copy = count_op(g, PETREL_OP_COPY_) + count_op(g, PETREL_OP_COPY);
    return c;
}

static bool is_arange(pt_op op) {
    return op == PETREL_OP_ARANGE || op == PETREL_OP_ARANGE_START || op == PETREL_OP_ARANGE_START_STEP;
}

/* The checks on a compiled LLM (see the file comment). */
static void check_llm(const char *name, const pt_graph *g) {
    for (int32_t v = 0; v < g->nvalues; v++) {
        const pt_value *b = &g->values[v];
        if (b->src != PT_SRC_BUFFER || pt_dtype_is_float(b->dtype)) continue;
        for (int32_t i = 0; i < g->nnodes; i++)
            CHECK(!reads(&g->nodes[i], v), "%s: %s still reads or writes counter '%s'", name,
                  pt_op_table[g->nodes[i].op].target, b->name);
        for (int32_t i = 0; i < g->nmuts; i++)
            CHECK(g->muts[i].buffer_vid != v, "%s: counter '%s' still mutated", name, b->name);
    }
    int32_t pos = -1;
    int sdpa = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        if (n->op != PETREL_OP_PETREL_SDPA_CACHE) continue;
        sdpa++;
        if (pos < 0) pos = n->args[5].items[0].vid;
        CHECK(n->args[5].items[0].vid == pos, "%s: fused attentions write at different positions", name);
    }
    CHECK(sdpa > 1, "%s: %d fused attentions", name, sdpa);
    /* pos = add(arange(T), select(cache_position, 0, 0)) */
    const pt_node *add = def_of(g, pos);
    const pt_node *ar = add && add->op == PETREL_OP_ADD_TENSOR ? def_of(g, add->args[0].items[0].vid) : NULL;
    const pt_node *sel = add && add->op == PETREL_OP_ADD_TENSOR ? def_of(g, add->args[1].items[0].vid) : NULL;
    CHECK(ar && is_arange(ar->op) && sel && sel->op == PETREL_OP_SELECT &&
              g->values[sel->args[0].items[0].vid].src == PT_SRC_USER_INPUT,
          "%s: positions are not add(arange, cache_position[0])", name);
    int dynamic = 0; /* aranges over the new tokens (a symbolic end) */
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        bool sym = false;
        for (int a = 0; a < n->nargs; a++) sym |= n->args[a].n == 1 && n->args[a].items[0].vid >= 0;
        dynamic += is_arange(n->op) && sym;
    }
    CHECK(dynamic == 1, "%s: %d aranges over the new tokens, want 1", name, dynamic);
    counts c = count(g);
    CHECK(c.add_ == 0 && c.copy == 0, "%s: %d add_, %d copy/copy_ left", name, c.add_, c.copy);
}

static void test_llm(const char *name, const char *path) {
    pt_mapping map;
    pz_archive z;
    pt_graph g;
    if (!import(path, &map, &z, &g)) {
        CHECK(0, "%s: import failed", name);
        return;
    }
    pc_remove_noops(&g);
    pc_fuse(&g);
    pc_dce(&g);
    counts b = count(&g);
    close_import(&map, &z, &g);
    if (petrel_compile(NULL, path, out_path, NULL) != PETREL_OK) {
        CHECK(0, "%s: compile: %s", name, petrel_last_error());
        return;
    }
    pt_err err = {{0}};
    memset(&g, 0, sizeof g);
    if (pt_map_file(&map, out_path, &err) != PETREL_OK || pf_read(&g, map.data, map.size, false, &err) != PETREL_OK) {
        CHECK(0, "%s: reading the program: %s", name, err.msg);
        return;
    }
    counts a = count(&g);
    printf("%-18s nodes %3d -> %3d  arange %d -> %d  add %2d -> %2d  add_ %d -> %d  copy/copy_ %d -> %d  "
           "mutations %d -> %d\n",
           name, b.nodes, a.nodes, b.arange, a.arange, b.add, a.add, b.add_, a.add_, b.copy, a.copy, b.muts, a.muts);
    check_llm(name, &g);
    pt_graph_free(&g);
    pt_unmap_file(&map);
    remove(out_path);
}

/* ---- hand-built graphs ---------------------------------------------------------- */

/* An argument as written in a test: tensor, int, float, bool, None,
 * dtype, int list. */
typedef struct targ {
    pt_arg_kind kind;
    int32_t vid;
    int64_t i;
    double f;
    int n;
    int64_t list[4];
} targ;

#define T(v) ((targ){PT_ARG_TENSOR, (v), 0, 0, 1, {0}})
#define I(x) ((targ){PT_ARG_INT, -1, (x), 0, 1, {0}})
#define F(x) ((targ){PT_ARG_FLOAT, -1, 0, (x), 1, {0}})
#define B(x) ((targ){PT_ARG_BOOL, -1, (x), 0, 1, {0}})
#define NONE ((targ){PT_ARG_NONE, -1, 0, 0, 0, {0}})
#define DT(x) ((targ){PT_ARG_DTYPE, -1, (x), 0, 1, {0}})
#define INTS1(a) ((targ){PT_ARG_INTS, -1, 0, 0, 1, {(a)}})
#define DIMS(...) ((int64_t[]){__VA_ARGS__})
#define ARGS(...) (int)(sizeof((targ[]){__VA_ARGS__}) / sizeof(targ)), ((targ[]){__VA_ARGS__})

/* A schema default as an argument (the forms the ops used here have). */
static void default_arg(const pt_schema_arg *s, pt_arg *a) {
    const char *d = s->defval;
    if (!strcmp(d, "None")) return; /* PT_ARG_NONE */
    if (s->type == PT_ST_OTHER) {
        a->kind = PT_ARG_OTHER;
        return;
    }
    a->n = 1;
    a->items = pt_calloc(1, sizeof *a->items);
    a->items[0].vid = -1;
    if (!strcmp(d, "True") || !strcmp(d, "False")) {
        a->kind = PT_ARG_BOOL;
        a->items[0].i = !strcmp(d, "True");
    } else if (s->type == PT_ST_FLOAT) {
        a->kind = PT_ARG_FLOAT;
        a->items[0].f = strtod(d, NULL);
    } else {
        a->kind = PT_ARG_INT;
        a->items[0].i = strtoll(d, NULL, 10);
        a->items[0].f = (double)a->items[0].i;
    }
}

/* Node `op` over the given leading arguments (the rest: schema defaults)
 * making a new value `out`; returns its id. */
static int32_t node(pt_graph *g, const char *out, petrel_dtype dt, int rank, const int64_t *shape, pt_op op, int nargs,
                    const targ *args) {
    int32_t v = tg_value(g, out, PT_SRC_NODE, dt, rank, shape);
    pt_schema sc;
    if (!pt_schema_parse(pt_op_table[op].schema, &sc)) abort();
    g->nodes = pt_realloc(g->nodes, (size_t)(g->nnodes + 1) * sizeof *g->nodes);
    pt_node *n = &g->nodes[g->nnodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->nargs = sc.nargs;
    n->args = pt_calloc((size_t)sc.nargs, sizeof *n->args);
    for (int a = 0; a < sc.nargs; a++) {
        pt_arg *x = &n->args[a];
        if (a >= nargs) {
            default_arg(&sc.args[a], x);
            continue;
        }
        x->kind = args[a].kind;
        x->n = args[a].n;
        x->items = x->n ? pt_calloc((size_t)x->n, sizeof *x->items) : NULL;
        for (int k = 0; k < x->n; k++) {
            x->items[k] = (pt_item){args[a].vid, args[a].i, args[a].f};
            if (x->kind == PT_ARG_INTS) x->items[k] = (pt_item){-1, args[a].list[k], (double)args[a].list[k]};
        }
    }
    n->nout = 1;
    n->outs = pt_calloc(1, sizeof *n->outs);
    n->outs[0] = v;
    n->name = pt_strdup(out);
    return v;
}

static void output(pt_graph *g, int32_t v) {
    g->outputs = pt_realloc(g->outputs, (size_t)(g->noutputs + 1) * sizeof *g->outputs);
    g->outputs[g->noutputs++] = (pt_user_output){{v, 0, 0}, PT_V_TENSOR};
}

#define I64 PETREL_DTYPE_I64
#define SCALAR 0, NULL

/* ---- 2. forwarding and dead writes ----------------------------------------------- */

/* StaticCache as transformers exports it: overwrite the counter, read it
 * through a copy and directly, bump both.  `rank1`: the counter has shape
 * (1) and the overwrite broadcasts a 0-d position into it. */
static void g_static_cache(pt_graph *g, bool rank1) {
    tg_init(g);
    int r = rank1 ? 1 : 0;
    int32_t pos = tg_value(g, "cache_position", PT_SRC_USER_INPUT, I64, 1, DIMS(1));
    int32_t c = tg_value(g, "cumulative_length", PT_SRC_BUFFER, I64, r, DIMS(1));
    int32_t s = node(g, "select", I64, SCALAR, PETREL_OP_SELECT, ARGS(T(pos), I(0), I(0)));
    int32_t c1 = node(g, "copy_", I64, r, DIMS(1), PETREL_OP_COPY_, ARGS(T(c), T(s)));
    int32_t t = node(g, "to", I64, r, DIMS(1), PETREL_OP_CLONE, ARGS(T(c1)));
    int32_t a = node(g, "arange", I64, 1, DIMS(3), PETREL_OP_ARANGE, ARGS(I(3)));
    int32_t p = node(g, "add", I64, 1, DIMS(3), PETREL_OP_ADD_TENSOR, ARGS(T(a), T(t)));
    node(g, "add_", I64, r, DIMS(1), PETREL_OP_ADD__TENSOR, ARGS(T(t), I(3)));
    int32_t a2 = node(g, "arange_1", I64, 1, DIMS(3), PETREL_OP_ARANGE, ARGS(I(3)));
    int32_t p2 = node(g, "add_1", I64, 1, DIMS(3), PETREL_OP_ADD_TENSOR, ARGS(T(a2), T(c1)));
    node(g, "add__1", I64, r, DIMS(1), PETREL_OP_ADD__TENSOR, ARGS(T(c1), I(3)));
    output(g, node(g, "mul", I64, 1, DIMS(3), PETREL_OP_MUL_TENSOR, ARGS(T(p), T(p2))));
}
static void g_static_cache_0d(pt_graph *g) { g_static_cache(g, false); }
static void g_static_cache_1(pt_graph *g) { g_static_cache(g, true); }

/* The counter is read before the overwrite: the next call sees this
 * call's bump, which must stay. */
static void g_read_first(pt_graph *g) {
    tg_init(g);
    int32_t pos = tg_value(g, "cache_position", PT_SRC_USER_INPUT, I64, 1, DIMS(1));
    int32_t c = tg_value(g, "counter", PT_SRC_BUFFER, I64, SCALAR);
    output(g, node(g, "seen", I64, SCALAR, PETREL_OP_ADD_TENSOR, ARGS(T(c), I(100))));
    int32_t s = node(g, "select", I64, SCALAR, PETREL_OP_SELECT, ARGS(T(pos), I(0), I(0)));
    int32_t c1 = node(g, "copy_", I64, SCALAR, PETREL_OP_COPY_, ARGS(T(c), T(s)));
    int32_t a = node(g, "arange", I64, 1, DIMS(3), PETREL_OP_ARANGE, ARGS(I(3)));
    output(g, node(g, "add", I64, 1, DIMS(3), PETREL_OP_ADD_TENSOR, ARGS(T(a), T(c1))));
    node(g, "add_", I64, SCALAR, PETREL_OP_ADD__TENSOR, ARGS(T(c1), I(3)));
}

/* Half of the buffer is overwritten (through a slice): the other half
 * carries over, so nothing may go. */
static void g_partial(pt_graph *g) {
    tg_init(g);
    int32_t pos = tg_value(g, "cache_position", PT_SRC_USER_INPUT, I64, 1, DIMS(1));
    int32_t c = tg_value(g, "counter", PT_SRC_BUFFER, I64, 1, DIMS(4));
    int32_t s = node(g, "select", I64, SCALAR, PETREL_OP_SELECT, ARGS(T(pos), I(0), I(0)));
    int32_t v = node(g, "slice", I64, 1, DIMS(2), PETREL_OP_SLICE, ARGS(T(c), I(0), I(0), I(2)));
    node(g, "copy_", I64, 1, DIMS(2), PETREL_OP_COPY_, ARGS(T(v), T(s)));
    output(g, node(g, "add", I64, 1, DIMS(4), PETREL_OP_ADD_TENSOR, ARGS(T(c), I(1))));
    node(g, "add_", I64, 1, DIMS(4), PETREL_OP_ADD__TENSOR, ARGS(T(c), I(1)));
}

/* copy_ converts int64 to int32 (positions past 2^31 wrap): the read must
 * keep reading the converted counter. */
static void g_dtype(pt_graph *g) {
    tg_init(g);
    int32_t pos = tg_value(g, "cache_position", PT_SRC_USER_INPUT, I64, 1, DIMS(1));
    int32_t c = tg_value(g, "counter", PT_SRC_BUFFER, PETREL_DTYPE_I32, SCALAR);
    int32_t s = node(g, "select", I64, SCALAR, PETREL_OP_SELECT, ARGS(T(pos), I(0), I(0)));
    int32_t c1 = node(g, "copy_", PETREL_DTYPE_I32, SCALAR, PETREL_OP_COPY_, ARGS(T(c), T(s)));
    int32_t a = node(g, "arange", I64, 1, DIMS(3), PETREL_OP_ARANGE, ARGS(I(3)));
    output(g, node(g, "add", I64, 1, DIMS(3), PETREL_OP_ADD_TENSOR, ARGS(T(a), T(c1))));
    node(g, "add_", PETREL_DTYPE_I32, SCALAR, PETREL_OP_ADD__TENSOR, ARGS(T(c1), I(3)));
}

/* A view of the counter taken before a bump is read after it: it sees
 * the bump (views alias; they are never redirected). */
static void g_view(pt_graph *g) {
    tg_init(g);
    int32_t pos = tg_value(g, "cache_position", PT_SRC_USER_INPUT, I64, 1, DIMS(1));
    int32_t c = tg_value(g, "counter", PT_SRC_BUFFER, I64, SCALAR);
    int32_t s = node(g, "select", I64, SCALAR, PETREL_OP_SELECT, ARGS(T(pos), I(0), I(0)));
    int32_t c1 = node(g, "copy_", I64, SCALAR, PETREL_OP_COPY_, ARGS(T(c), T(s)));
    int32_t u = node(g, "unsqueeze", I64, 1, DIMS(1), PETREL_OP_UNSQUEEZE, ARGS(T(c1), I(0)));
    node(g, "add_", I64, SCALAR, PETREL_OP_ADD__TENSOR, ARGS(T(c1), I(3)));
    int32_t a = node(g, "arange", I64, 1, DIMS(3), PETREL_OP_ARANGE, ARGS(I(3)));
    output(g, node(g, "add", I64, 1, DIMS(3), PETREL_OP_ADD_TENSOR, ARGS(T(a), T(u))));
}

/* The overwrite broadcasts a 0-d float32 position into a (1) counter
 * that a float16 arange is added to: the sum is float32, but with the 0-d
 * position torch would add in float16. */
static void g_promotion(pt_graph *g) {
    tg_init(g);
    int32_t pos = tg_value(g, "cache_position", PT_SRC_USER_INPUT, I64, 1, DIMS(1));
    int32_t c = tg_value(g, "counter", PT_SRC_BUFFER, PETREL_DTYPE_F32, 1, DIMS(1));
    int32_t pf = node(g, "pos_f", PETREL_DTYPE_F32, 1, DIMS(1), PETREL_OP_TO_COPY, ARGS(T(pos), DT(PETREL_DTYPE_F32)));
    int32_t s = node(g, "select", PETREL_DTYPE_F32, SCALAR, PETREL_OP_SELECT, ARGS(T(pf), I(0), I(0)));
    int32_t c1 = node(g, "copy_", PETREL_DTYPE_F32, 1, DIMS(1), PETREL_OP_COPY_, ARGS(T(c), T(s)));
    int32_t a = node(g, "arange", I64, 1, DIMS(3), PETREL_OP_ARANGE, ARGS(I(3)));
    int32_t h = node(g, "half", PETREL_DTYPE_F16, 1, DIMS(3), PETREL_OP_TO_COPY, ARGS(T(a), DT(PETREL_DTYPE_F16)));
    output(g, node(g, "add", PETREL_DTYPE_F32, 1, DIMS(3), PETREL_OP_ADD_TENSOR, ARGS(T(h), T(c1))));
}

/* A bump between the overwrite and the read. */
static void g_write_between(pt_graph *g) {
    tg_init(g);
    int32_t pos = tg_value(g, "cache_position", PT_SRC_USER_INPUT, I64, 1, DIMS(1));
    int32_t c = tg_value(g, "counter", PT_SRC_BUFFER, I64, SCALAR);
    int32_t s = node(g, "select", I64, SCALAR, PETREL_OP_SELECT, ARGS(T(pos), I(0), I(0)));
    int32_t c1 = node(g, "copy_", I64, SCALAR, PETREL_OP_COPY_, ARGS(T(c), T(s)));
    node(g, "add_", I64, SCALAR, PETREL_OP_ADD__TENSOR, ARGS(T(c1), I(3)));
    int32_t a = node(g, "arange", I64, 1, DIMS(3), PETREL_OP_ARANGE, ARGS(I(3)));
    output(g, node(g, "add", I64, 1, DIMS(3), PETREL_OP_ADD_TENSOR, ARGS(T(a), T(c1))));
}

/* CSE: mul(x, 2) before and after a write to x, and once more; two
 * uninitialized tensors. */
static void g_cse(pt_graph *g) {
    tg_init(g);
    int32_t pos = tg_value(g, "cache_position", PT_SRC_USER_INPUT, I64, 1, DIMS(1));
    int32_t x = node(g, "x", I64, 1, DIMS(1), PETREL_OP_CLONE, ARGS(T(pos)));
    int32_t m1 = node(g, "m1", I64, 1, DIMS(1), PETREL_OP_MUL_TENSOR, ARGS(T(x), I(2)));
    node(g, "x_", I64, 1, DIMS(1), PETREL_OP_ADD__TENSOR, ARGS(T(x), I(1)));
    int32_t m2 = node(g, "m2", I64, 1, DIMS(1), PETREL_OP_MUL_TENSOR, ARGS(T(x), I(2)));
    int32_t m3 = node(g, "m3", I64, 1, DIMS(1), PETREL_OP_MUL_TENSOR, ARGS(T(x), I(2)));
    int32_t s = node(g, "s", I64, 1, DIMS(1), PETREL_OP_ADD_TENSOR, ARGS(T(m1), T(m2)));
    output(g, node(g, "s2", I64, 1, DIMS(1), PETREL_OP_ADD_TENSOR, ARGS(T(s), T(m3))));
    int32_t e1 = node(g, "e1", I64, 1, DIMS(2), PETREL_OP_EMPTY, ARGS(INTS1(2)));
    int32_t e2 = node(g, "e2", I64, 1, DIMS(2), PETREL_OP_EMPTY, ARGS(INTS1(2)));
    int32_t z1 = node(g, "z1", I64, 1, DIMS(2), PETREL_OP_MUL_TENSOR, ARGS(T(e1), I(0)));
    int32_t z2 = node(g, "z2", I64, 1, DIMS(2), PETREL_OP_MUL_TENSOR, ARGS(T(e2), I(0)));
    output(g, node(g, "z", I64, 1, DIMS(2), PETREL_OP_ADD_TENSOR, ARGS(T(z1), T(z2))));
}

/* Run the graph in a program twice, with position p1 then p2, appending
 * every output element to out.  Returns the number of elements, -1 on
 * failure. */
static int run_twice(const pt_graph *g, int64_t p1, int64_t p2, double *out, int max) {
    pt_err err = {{0}};
    if (pf_write(g, NULL, 0, out_path, &err) != PETREL_OK) {
        printf("write: %s\n", err.msg);
        return -1;
    }
    petrel_program_t *p = NULL;
    int n = 0;
    if (petrel_program_load(&p, out_path, NULL) != PETREL_OK) n = -1;
    int64_t pos[2] = {p1, p2};
    for (int call = 0; n >= 0 && call < 2; call++) {
        petrel_tensor_desc in = {PETREL_DTYPE_I64, 1, {1}, &pos[call]};
        if (petrel_program_set_input(p, 0, &in) != PETREL_OK || petrel_program_execute(p) != PETREL_OK) {
            printf("run: %s\n", petrel_program_error(p));
            n = -1;
            break;
        }
        for (int o = 0; o < petrel_program_num_outputs(p); o++) {
            petrel_tensor_desc t;
            petrel_value_kind kind;
            if (petrel_program_get_output(&t, p, o, &kind) != PETREL_OK) return -1;
            for (int64_t e = 0; e < petrel_tensor_numel(&t) && n < max; e++) out[n++] = petrel_tensor_get_f64(&t, e);
        }
    }
    petrel_program_free(p);
    remove(out_path);
    return n;
}

typedef void (*graph_fn)(pt_graph *g);

/* Build, run, pass, run again: the same numbers.  The graph after the
 * passes is left in *after for the caller's checks. */
static void run_case(const char *name, graph_fn build, pt_graph *after) {
    pt_graph g;
    pt_err err = {{0}};
    build(&g);
    CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "%s: the test graph is invalid: %s", name, err.msg);
    double want[64], got[64];
    int64_t p1 = 5, p2 = (1LL << 33) + 7; /* the second wraps in 32 bits */
    int nw = run_twice(&g, p1, p2, want, 64);
    pt_graph_free(&g);
    build(after);
    pc_forward_state(after);
    pc_cse(after);
    pc_dce(after);
    CHECK(pt_graph_verify(after, &err) == PETREL_OK, "%s: invalid after the passes: %s", name, err.msg);
    int ng = run_twice(after, p1, p2, got, 64);
    CHECK(nw > 0 && ng == nw, "%s: ran to %d and %d numbers", name, nw, ng);
    for (int i = 0; nw > 0 && i < nw && i < ng; i++)
        CHECK(want[i] == got[i], "%s: number %d is %g, was %g before the passes", name, i, got[i], want[i]);
}

/* The add.Tensor reading the arange: which value is its second operand? */
static int32_t position_operand(const pt_graph *g) {
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        const pt_node *d = n->op == PETREL_OP_ADD_TENSOR ? def_of(g, n->args[0].items[0].vid) : NULL;
        if (d && d->op == PETREL_OP_ARANGE) return n->args[1].items[0].vid;
    }
    return -1;
}

static const char *value_name(const pt_graph *g, int32_t v) { return v >= 0 ? g->values[v].name : "(none)"; }

static void test_forwarding(void) {
    pt_graph g;
    static const char *const cases[] = {"StaticCache (0-d counter)", "StaticCache ((1) counter)"};
    graph_fn builds[] = {g_static_cache_0d, g_static_cache_1};
    for (int k = 0; k < 2; k++) {
        run_case(cases[k], builds[k], &g);
        CHECK(count_op(&g, PETREL_OP_COPY_) == 0 && count_op(&g, PETREL_OP_ADD__TENSOR) == 0 &&
                  count_op(&g, PETREL_OP_CLONE) == 0,
              "%s: bookkeeping left", cases[k]);
        CHECK(count_op(&g, PETREL_OP_ARANGE) == 1 && count_op(&g, PETREL_OP_ADD_TENSOR) == 1,
              "%s: %d arange, %d add left, want 1 each", cases[k], count_op(&g, PETREL_OP_ARANGE),
              count_op(&g, PETREL_OP_ADD_TENSOR));
        CHECK(!strcmp(value_name(&g, position_operand(&g)), "select"), "%s: positions read '%s', want 'select'",
              cases[k], value_name(&g, position_operand(&g)));
        pt_graph_free(&g);
    }
    run_case("read before the overwrite", g_read_first, &g);
    CHECK(count_op(&g, PETREL_OP_COPY_) == 1 && count_op(&g, PETREL_OP_ADD__TENSOR) == 1,
          "read before the overwrite: the counter's writes must stay");
    pt_graph_free(&g);
    run_case("partial overwrite", g_partial, &g);
    CHECK(count_op(&g, PETREL_OP_COPY_) == 1 && count_op(&g, PETREL_OP_ADD__TENSOR) == 1 && g.nnodes == 5,
          "partial overwrite: the graph must stay as it was (%d nodes)", g.nnodes);
    pt_graph_free(&g);
    run_case("dtype-changing copy_", g_dtype, &g);
    CHECK(!strcmp(value_name(&g, position_operand(&g)), "copy_") && count_op(&g, PETREL_OP_COPY_) == 1,
          "dtype-changing copy_: positions read '%s', want the converted 'copy_'", value_name(&g, position_operand(&g)));
    pt_graph_free(&g);
    run_case("view before a write", g_view, &g);
    CHECK(count_op(&g, PETREL_OP_ADD__TENSOR) == 1, "view before a write: the bump must stay");
    pt_graph_free(&g);
    run_case("0-d promotion", g_promotion, &g);
    CHECK(count_op(&g, PETREL_OP_COPY_) == 1, "0-d promotion: the (1) counter must stay");
    pt_graph_free(&g);
    run_case("write between overwrite and read", g_write_between, &g);
    CHECK(!strcmp(value_name(&g, position_operand(&g)), "copy_") && count_op(&g, PETREL_OP_ADD__TENSOR) == 1,
          "write between: positions read '%s', want 'copy_'", value_name(&g, position_operand(&g)));
    pt_graph_free(&g);
}

/* ---- 3. common subexpressions ------------------------------------------------------ */

/* Twins that must not merge: dropout and attention with dropout (both
 * draw random numbers); and a pair that must. */
static void g_random(pt_graph *g) {
    tg_init(g);
    const int64_t *qs = DIMS(1, 1, 2, 4);
    int32_t q = tg_value(g, "q", PT_SRC_USER_INPUT, PETREL_DTYPE_F32, 4, qs);
    int32_t d1 = node(g, "d1", PETREL_DTYPE_F32, 4, qs, PETREL_OP_DROPOUT, ARGS(T(q), F(0.5), B(1)));
    int32_t d2 = node(g, "d2", PETREL_DTYPE_F32, 4, qs, PETREL_OP_DROPOUT, ARGS(T(q), F(0.5), B(1)));
    output(g, node(g, "d", PETREL_DTYPE_F32, 4, qs, PETREL_OP_ADD_TENSOR, ARGS(T(d1), T(d2))));
    int32_t s1 = node(g, "s1", PETREL_DTYPE_F32, 4, qs, PETREL_OP_SDPA, ARGS(T(q), T(q), T(q), NONE, F(0.25)));
    int32_t s2 = node(g, "s2", PETREL_DTYPE_F32, 4, qs, PETREL_OP_SDPA, ARGS(T(q), T(q), T(q), NONE, F(0.25)));
    output(g, node(g, "s", PETREL_DTYPE_F32, 4, qs, PETREL_OP_ADD_TENSOR, ARGS(T(s1), T(s2))));
    int32_t a1 = node(g, "a1", I64, 1, DIMS(4), PETREL_OP_ARANGE, ARGS(I(4)));
    int32_t a2 = node(g, "a2", I64, 1, DIMS(4), PETREL_OP_ARANGE, ARGS(I(4)));
    output(g, node(g, "a", I64, 1, DIMS(4), PETREL_OP_ADD_TENSOR, ARGS(T(a1), T(a2))));
}

static void test_cse(void) {
    pt_graph g;
    pt_err err = {{0}};
    run_case("cse", g_cse, &g);
    CHECK(count_op(&g, PETREL_OP_MUL_TENSOR) == 4, "cse: %d mul left, want 4 (m1, m2; z1, z2)",
          count_op(&g, PETREL_OP_MUL_TENSOR));
    CHECK(count_op(&g, PETREL_OP_EMPTY) == 2, "cse: uninitialized tensors merged");
    pt_graph_free(&g);
    g_random(&g);
    CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "random: the test graph is invalid: %s", err.msg);
    int merged = pc_cse(&g);
    CHECK(merged == 1 && count_op(&g, PETREL_OP_ARANGE) == 1, "random: %d merged, want 1 (the aranges)", merged);
    CHECK(count_op(&g, PETREL_OP_DROPOUT) == 2 && count_op(&g, PETREL_OP_SDPA) == 2, "random: random ops merged");
    CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "random: %s", err.msg);
    pt_graph_free(&g);
}

/* ---- 4. out of memory --------------------------------------------------------------- */

static bool prepared(const char *path, pt_mapping *map, pz_archive *z, pt_graph *g) {
    if (!import(path, map, z, g)) return false;
    pc_remove_noops(g);
    pc_fuse(g);
    return true;
}

static void test_out_of_memory(const char *path) {
    pt_mapping map;
    pz_archive z;
    pt_graph g;
    pt_err err = {{0}};
    if (!prepared(path, &map, &z, &g)) return;
    pt_alloc_fail_at(0);
    pc_forward_state(&g);
    pc_cse(&g);
    int64_t total = pt_alloc_fail_at(0);
    close_import(&map, &z, &g);
    CHECK(total > 0, "%s: the passes allocated nothing", path);
    int bad = 0;
    for (int64_t n = 1; n <= total && bad < 3; n++) {
        if (!prepared(path, &map, &z, &g)) return;
        pt_alloc_fail_at(n);
        pc_forward_state(&g);
        pc_cse(&g);
        pt_alloc_fail_at(0);
        pc_dce(&g);
        if (pt_graph_verify(&g, &err) != PETREL_OK) {
            CHECK(0, "%s: allocation %lld of %lld failing leaves a bad graph: %s", path, (long long)n,
                  (long long)total, err.msg);
            bad++;
        }
        close_import(&map, &z, &g);
    }
}

int main(void) {
    static const char *const suite[] = {"llama_export",     "llama_aten",     "llama_bf16_aten", "llama_fp16_aten",
                                        "qwen3_export",     "qwen3_aten",     "qwen3_moe_export", "qwen3_moe_aten",
                                        "gemma3_export",    "gemma3_aten",    "phi3_export",     "phi3_aten"};
    test_llm("llm/llama", "tests/fixtures/llm/llama.pt2");
    test_llm("llm/qwen3", "tests/fixtures/llm/qwen3.pt2");
    for (size_t i = 0; i < sizeof suite / sizeof suite[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/%s/model.pt2", suite[i]);
        test_llm(suite[i], path);
    }
    test_forwarding();
    test_cse();
    test_out_of_memory("tests/fixtures/llm/llama.pt2");
    test_out_of_memory("tests/fixtures/llm/qwen3.pt2");
    printf("test_state: %zu LLMs, 9 hand-built graphs, %d failure%s\n", 2 + sizeof suite / sizeof suite[0], failures,
           failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
