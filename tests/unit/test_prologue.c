/*
** test_prologue.c -- the decode step's prologue (what runs before layer
** 0), white-box.  1. No-op removal of x * 1 and x / 1 (passes.c) on
** hand-built graphs: removed where exact, kept where the dtype changes,
** the factor is not 1 or stands first in a division, the result is a
** graph result, or a write could tell the result from its input (to it,
** through a view, or to the input after the node).  2. petrel.rope_table
** (rotary.c, the CPU kernel in cpu/ops/fused.c): HF's rotary tables in
** both export forms, with and without a scale and a final cast, become one
** node, and its program computes the unfused program's bits; nothing
** fuses when an intermediate is read elsewhere, the freqs are reshaped
** instead of transposed, the two tables are scaled differently, or the
** positions are written between; the kernel rejects misshapen arguments.
** 3. Every LLM fixture, compiled: no multiplication by 1 left, and the
** data nodes before the first norm or linear are exactly the embedding,
** one position expression (arange + add; CSE merges the per-layer
** copies), the mask and the rotary tables.  Before this work the Llama
** export ran 14 such kernels (two scaled and cast tables: matmul, cat,
** cos, sin, two mul, three casts), now 5 or 6.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compiler.h"
#include "format/format.h"
#include "petrel.h"

static const char *out_path = "build-test-prologue.petrel";
#include "check.h"
#include "graph_util.h"

static int count_op(const pt_graph *g, pt_op op) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++) c += g->nodes[i].op == op;
    return c;
}

/* ---- building graphs -------------------------------------------------------- */

/* A node `op` (every argument None until set) making one contiguous value
 * of dtype dt and the given shape; returns the node's index. */
static int32_t mk(pt_graph *g, pt_op op, petrel_dtype dt, int rank, const int64_t *shape) {
    char name[16];
    snprintf(name, sizeof name, "v%d", (int)g->nvalues);
    int32_t out = tg_value(g, name, PT_SRC_NODE, dt, rank, shape);
    pt_schema sc;
    if (!pt_schema_parse(pt_op_table[op].schema, &sc)) abort();
    tg_node(g, op, sc.nargs, 1, &out);
    return g->nnodes - 1;
}

static int32_t out_of(const pt_graph *g, int32_t ni) { return g->nodes[ni].outs[0]; }

/* Argument a of node ni: count items of `kind`, value ids or literals. */
static void set_arg(pt_graph *g, int32_t ni, int a, pt_arg_kind kind, int count, const int32_t *vids,
                    const double *lits) {
    pt_arg *p = &g->nodes[ni].args[a];
    *p = (pt_arg){.kind = kind, .n = count, .items = pt_calloc((size_t)count, sizeof(pt_item))};
    for (int k = 0; k < count; k++)
        p->items[k] = vids ? (pt_item){vids[k], 0, 0} : (pt_item){-1, (int64_t)lits[k], lits[k]};
}
static void a_t(pt_graph *g, int32_t ni, int a, int32_t v) { set_arg(g, ni, a, PT_ARG_TENSOR, 1, &v, NULL); }
static void a_i(pt_graph *g, int32_t ni, int a, double v) { set_arg(g, ni, a, PT_ARG_INT, 1, NULL, &v); }
static void a_f(pt_graph *g, int32_t ni, int a, double v) { set_arg(g, ni, a, PT_ARG_FLOAT, 1, NULL, &v); }
static void a_dt(pt_graph *g, int32_t ni, int a, petrel_dtype dt) {
    double v = dt;
    set_arg(g, ni, a, PT_ARG_DTYPE, 1, NULL, &v);
}
#define A_INTS(g, ni, a, ...) \
    set_arg((g), (ni), (a), PT_ARG_INTS, (int)(sizeof((double[]){__VA_ARGS__}) / sizeof(double)), NULL, \
            (double[]){__VA_ARGS__})

static void add_output(pt_graph *g, int32_t v) {
    pt_user_output *o = pt_realloc(g->outputs, (size_t)(g->noutputs + 1) * sizeof *o);
    if (!o) abort();
    g->outputs = o;
    g->outputs[g->noutputs++] = (pt_user_output){{v, 0, 0}, PT_V_TENSOR};
}

#define DIMS(...) ((int64_t[]){__VA_ARGS__})

/* ---- 1. x * 1 and x / 1 ------------------------------------------------------ */

typedef enum unit_variant {
    UV_MUL,          /* x * 1.0: removed */
    UV_DIV_INT,      /* x / 1 (an int): removed */
    UV_ONE_FIRST,    /* 1.0 * x: removed */
    UV_WRITE_BEFORE, /* x written in place before: removed */
    UV_INT_TO_FLOAT, /* integer x * 1.0 is a float tensor: kept */
    UV_TWO,          /* x * 2.0: kept */
    UV_ONE_OVER,     /* 1 / x: kept */
    UV_RESULT,       /* the product is a graph result: kept */
    UV_WRITE_AFTER,  /* x written in place after: kept */
    UV_WRITTEN,      /* the product written in place: kept */
    UV_VIEW_WRITTEN, /* the product written through a view: kept */
} unit_variant;

/* v += 1 in place (add_.Tensor), v contiguous. */
static void add_one_(pt_graph *g, int32_t v) {
    const pt_value *x = &g->values[v];
    int64_t shape[PETREL_MAX_RANK];
    for (int d = 0; d < x->rank; d++) shape[d] = x->shape[d].lit;
    int32_t n = mk(g, PETREL_OP_ADD__TENSOR, x->dtype, x->rank, shape);
    a_t(g, n, 0, v), a_i(g, n, 1, 1), a_i(g, n, 2, 1);
}

/* x (2, 3) [-> a clone, written before or after] -> y = x * 1 -> neg(y). */
static void unit_graph(pt_graph *g, unit_variant uv) {
    tg_init(g);
    petrel_dtype dt = uv == UV_INT_TO_FLOAT ? PETREL_DTYPE_I64 : PETREL_DTYPE_F32;
    int32_t x = tg_value(g, "x", PT_SRC_USER_INPUT, dt, 2, DIMS(2, 3));
    if (uv == UV_WRITE_BEFORE || uv == UV_WRITE_AFTER) { /* a temporary, so that it may be written */
        int32_t c = mk(g, PETREL_OP_CLONE, dt, 2, DIMS(2, 3));
        a_t(g, c, 0, x);
        x = out_of(g, c);
    }
    if (uv == UV_WRITE_BEFORE) add_one_(g, x);
    pt_op op = uv == UV_DIV_INT || uv == UV_ONE_OVER ? PETREL_OP_DIV_TENSOR : PETREL_OP_MUL_TENSOR;
    int32_t m = mk(g, op, PETREL_DTYPE_F32, 2, DIMS(2, 3));
    int one_at = uv == UV_ONE_FIRST || uv == UV_ONE_OVER;
    a_t(g, m, one_at, x);
    if (uv == UV_DIV_INT) a_i(g, m, 1, 1);
    else a_f(g, m, 1 - one_at, uv == UV_TWO ? 2.0 : 1.0);
    int32_t y = out_of(g, m);
    if (uv == UV_WRITE_AFTER) add_one_(g, x);
    if (uv == UV_WRITTEN) add_one_(g, y);
    if (uv == UV_VIEW_WRITTEN) {
        int32_t v = mk(g, PETREL_OP_VIEW, PETREL_DTYPE_F32, 1, DIMS(6));
        a_t(g, v, 0, y), A_INTS(g, v, 1, 6);
        add_one_(g, out_of(g, v));
    }
    int32_t ng = mk(g, PETREL_OP_NEG, PETREL_DTYPE_F32, 2, DIMS(2, 3));
    a_t(g, ng, 0, y);
    add_output(g, out_of(g, ng));
    if (uv == UV_RESULT) add_output(g, y);
}

static void test_unit_factors(void) {
    static const struct {
        unit_variant uv;
        const char *name;
        bool removed;
    } vs[] = {{UV_MUL, "x * 1.0", true},
              {UV_DIV_INT, "x / 1", true},
              {UV_ONE_FIRST, "1.0 * x", true},
              {UV_WRITE_BEFORE, "x written before", true},
              {UV_INT_TO_FLOAT, "integer x * 1.0", false},
              {UV_TWO, "x * 2.0", false},
              {UV_ONE_OVER, "1.0 / x", false},
              {UV_RESULT, "the product a result", false},
              {UV_WRITE_AFTER, "x written after", false},
              {UV_WRITTEN, "the product written", false},
              {UV_VIEW_WRITTEN, "the product written through a view", false}};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        pt_graph g;
        pt_err err = {{0}};
        unit_graph(&g, vs[i].uv);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "%s: the test graph is invalid: %s", vs[i].name, err.msg);
        int nodes = g.nnodes, removed = pc_remove_noops(&g);
        int left = count_op(&g, PETREL_OP_MUL_TENSOR) + count_op(&g, PETREL_OP_DIV_TENSOR);
        CHECK(removed == vs[i].removed && left == !vs[i].removed && g.nnodes == nodes - removed,
              "%s: %d nodes removed, %d products left (want %s)", vs[i].name, removed, left,
              vs[i].removed ? "removed" : "kept");
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "%s: invalid after: %s", vs[i].name, err.msg);
        pt_graph_free(&g);
    }
}

/* ---- 2. petrel.rope_table ------------------------------------------------------ */

typedef struct table_case {
    const char *name;
    bool aten;          /* bmm between expand + view, a view of the result, permute */
    int64_t B, L, H;
    petrel_dtype inv_dt;
    double scale_c, scale_s; /* 0: no mul */
    int out_dt;         /* the final cast, -1 none */
    enum { TV_FUSES, TV_CAT_READ, TV_FREQ_READ, TV_RESHAPED, TV_POS_WRITTEN } variant;
} table_case;

static const table_case tables[] = {
    {"export form, bf16 tables", false, 1, 5, 4, PETREL_DTYPE_F32, 1.0, 1.0, PETREL_DTYPE_BF16, TV_FUSES},
    {"aten form, scaled", true, 2, 3, 8, PETREL_DTYPE_F32, 0.75, 0.75, -1, TV_FUSES},
    {"bf16 inv_freq, f16 tables", false, 2, 4, 4, PETREL_DTYPE_BF16, 0, 0, PETREL_DTYPE_F16, TV_FUSES},
    {"scale 1 kept (results)", false, 1, 3, 4, PETREL_DTYPE_F32, 1.0, 1.0, -1, TV_FUSES},
    {"aten form, f32 cast", true, 1, 4, 2, PETREL_DTYPE_F32, 0, 0, PETREL_DTYPE_F32, TV_FUSES},
    {"cat also a result", false, 1, 3, 4, PETREL_DTYPE_F32, 0, 0, -1, TV_CAT_READ},
    {"freqs read elsewhere", true, 1, 3, 4, PETREL_DTYPE_F32, 0, 0, -1, TV_FREQ_READ},
    {"freqs reshaped, not transposed", false, 1, 4, 4, PETREL_DTYPE_F32, 0, 0, -1, TV_RESHAPED},
    {"tables scaled differently", false, 1, 3, 4, PETREL_DTYPE_F32, 0.5, 0, -1, TV_FUSES},
    {"positions written between", false, 1, 3, 4, PETREL_DTYPE_F32, 0, 0, -1, TV_POS_WRITTEN},
};

/* Does case c fuse? */
static bool table_fuses(const table_case *c) { return c->variant == TV_FUSES && c->scale_c == c->scale_s; }

/* A cast node of v to dtype dt (to.dtype; _to_copy in the aten form). */
static int32_t cast_to(pt_graph *g, const table_case *c, int32_t v, petrel_dtype dt) {
    const pt_value *x = &g->values[v];
    int64_t shape[PETREL_MAX_RANK];
    for (int d = 0; d < x->rank; d++) shape[d] = x->shape[d].lit;
    int32_t n = mk(g, c->aten ? PETREL_OP_TO_COPY : PETREL_OP_TO_DTYPE, dt, x->rank, shape);
    a_t(g, n, 0, v), a_dt(g, n, 1, dt);
    return out_of(g, n);
}

/* Inputs inv_freq (H) and positions (B, L) i64; outputs cos, sin (B, L, 2H)
 * as HF's rotary embedding computes them (see rotary.c). */
static void table_graph(pt_graph *g, const table_case *c) {
    tg_init(g);
    int64_t B = c->B, L = c->L, H = c->H;
    petrel_dtype f32 = PETREL_DTYPE_F32, i64 = PETREL_DTYPE_I64;
    int32_t inv = tg_value(g, "inv_freq", PT_SRC_USER_INPUT, c->inv_dt, 1, DIMS(H));
    int32_t pos = tg_value(g, "positions", PT_SRC_USER_INPUT, i64, 2, DIMS(B, L));
    if (c->variant == TV_POS_WRITTEN) { /* a temporary, so that it may be written */
        int32_t n = mk(g, PETREL_OP_CLONE, i64, 2, DIMS(B, L));
        a_t(g, n, 0, pos);
        pos = out_of(g, n);
    }
    int32_t n = mk(g, PETREL_OP_UNSQUEEZE, c->inv_dt, 2, DIMS(1, H));
    a_t(g, n, 0, inv), a_i(g, n, 1, 0);
    int32_t u = out_of(g, n);
    n = mk(g, PETREL_OP_UNSQUEEZE, c->inv_dt, 3, DIMS(1, H, 1));
    a_t(g, n, 0, u), a_i(g, n, 1, 2);
    u = out_of(g, n);
    n = mk(g, PETREL_OP_EXPAND, c->inv_dt, 3, DIMS(B, H, 1));
    a_t(g, n, 0, u), A_INTS(g, n, 1, (double)B, -1, 1);
    int32_t a = cast_to(g, c, out_of(g, n), f32);
    n = mk(g, PETREL_OP_UNSQUEEZE, i64, 3, DIMS(B, 1, L));
    a_t(g, n, 0, pos), a_i(g, n, 1, 1);
    int32_t p = cast_to(g, c, out_of(g, n), f32), prod, t;
    if (c->variant == TV_POS_WRITTEN) add_one_(g, pos); /* the fused node would read it later */
    if (c->aten) {
        int32_t ops[2] = {a, p};
        for (int k = 0; k < 2; k++) {
            int64_t sh[3] = {B, k ? 1 : H, k ? L : 1};
            n = mk(g, PETREL_OP_EXPAND, f32, 3, sh);
            a_t(g, n, 0, ops[k]), A_INTS(g, n, 1, (double)sh[0], (double)sh[1], (double)sh[2]);
            int32_t v = mk(g, PETREL_OP_VIEW, f32, 3, sh);
            a_t(g, v, 0, out_of(g, n)), A_INTS(g, v, 1, (double)sh[0], (double)sh[1], (double)sh[2]);
            ops[k] = out_of(g, v);
        }
        n = mk(g, PETREL_OP_BMM, f32, 3, DIMS(B, H, L));
        a_t(g, n, 0, ops[0]), a_t(g, n, 1, ops[1]);
        int32_t v = mk(g, PETREL_OP_VIEW, f32, 3, DIMS(B, H, L));
        a_t(g, v, 0, out_of(g, n)), A_INTS(g, v, 1, (double)B, (double)H, (double)L);
        prod = out_of(g, v);
        n = mk(g, PETREL_OP_PERMUTE, f32, 3, DIMS(B, L, H));
        a_t(g, n, 0, prod), A_INTS(g, n, 1, 0, 2, 1);
    } else {
        n = mk(g, PETREL_OP_MATMUL, f32, 3, DIMS(B, H, L));
        a_t(g, n, 0, a), a_t(g, n, 1, p);
        prod = out_of(g, n);
        if (c->variant == TV_RESHAPED) { /* the same shape, the elements not transposed */
            n = mk(g, PETREL_OP_VIEW, f32, 3, DIMS(B, L, H));
            a_t(g, n, 0, prod), A_INTS(g, n, 1, (double)B, (double)L, (double)H);
        } else {
            n = mk(g, PETREL_OP_TRANSPOSE, f32, 3, DIMS(B, L, H));
            a_t(g, n, 0, prod), a_i(g, n, 1, 1), a_i(g, n, 2, 2);
        }
    }
    t = out_of(g, n);
    n = mk(g, PETREL_OP_CAT, f32, 3, DIMS(B, L, 2 * H));
    set_arg(g, n, 0, PT_ARG_TENSORS, 2, (int32_t[]){t, t}, NULL);
    a_i(g, n, 1, -1);
    int32_t e = out_of(g, n), tab[2];
    const double scale[2] = {c->scale_c, c->scale_s};
    for (int k = 0; k < 2; k++) {
        n = mk(g, k ? PETREL_OP_SIN : PETREL_OP_COS, f32, 3, DIMS(B, L, 2 * H));
        a_t(g, n, 0, e);
        tab[k] = out_of(g, n);
        if (scale[k] != 0) {
            n = mk(g, PETREL_OP_MUL_TENSOR, f32, 3, DIMS(B, L, 2 * H));
            a_t(g, n, 0, tab[k]), a_f(g, n, 1, scale[k]);
            tab[k] = out_of(g, n);
        }
    }
    for (int k = 0; k < 2 && c->out_dt >= 0; k++) tab[k] = cast_to(g, c, tab[k], (petrel_dtype)c->out_dt);
    add_output(g, tab[0]);
    add_output(g, tab[1]);
    if (c->variant == TV_CAT_READ) add_output(g, e);
    if (c->variant == TV_FREQ_READ) {
        n = mk(g, PETREL_OP_NEG, f32, 3, DIMS(B, H, L));
        a_t(g, n, 0, prod);
        add_output(g, out_of(g, n));
    }
}

static char run_error[512]; /* why run_table failed */

/* Run g (written to a program) with inv_freq[i] = 10000^(-i/H) and large
 * and small positions; the two tables' bytes go to out (max bytes).
 * Returns the byte count, -1 on failure (run_error says why). */
static int run_table(const pt_graph *g, uint8_t *out, int max) {
    run_error[0] = 0;
    petrel_program_t *p = tg_load(g, out_path, run_error, sizeof run_error);
    if (!p) return -1;
    const pt_value *iv = &g->values[g->inputs[0]], *pv = &g->values[g->inputs[1]];
    uint64_t inv[16]; /* room for any dtype */
    int64_t H = iv->shape[0].lit, pos[16];
    static const int64_t some[16] = {0, 1, 2, 3, 17, 100, 1023, 4095, 8191, 32767, 65535, 131071, 9, 8, 7, 6};
    for (int64_t i = 0; i < H; i++) pt_store_f64((uint8_t *)inv + i * (int64_t)petrel_dtype_size(iv->dtype), iv->dtype,
                                                 pow(10000.0, -(double)i / (double)H));
    memcpy(pos, some, sizeof pos);
    petrel_tensor_desc id = {iv->dtype, 1, {H}, inv}, pd = {PETREL_DTYPE_I64, pv->rank, {0}, pos};
    for (int d = 0; d < pv->rank; d++) pd.shape[d] = pv->shape[d].lit;
    int n = 0;
    if (petrel_program_set_input(p, 0, &id) != PETREL_OK || petrel_program_set_input(p, 1, &pd) != PETREL_OK ||
        petrel_program_execute(p) != PETREL_OK) {
        snprintf(run_error, sizeof run_error, "%s", petrel_program_error(p));
        n = -1;
    }
    for (int k = 0; k < 2 && n >= 0; k++) {
        petrel_tensor_desc t;
        petrel_value_kind kind;
        if (petrel_program_get_output(&t, p, k, &kind) != PETREL_OK) {
            snprintf(run_error, sizeof run_error, "%s", petrel_program_error(p));
            n = -1;
            break;
        }
        int bytes = (int)(petrel_tensor_numel(&t) * (int64_t)petrel_dtype_size(t.dtype));
        if (n + bytes > max) bytes = max - n;
        memcpy(out + n, t.data, (size_t)bytes);
        n += bytes;
    }
    petrel_program_free(p);
    remove(out_path);
    return n;
}

static void test_rope_table(void) {
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        const table_case *c = &tables[i];
        pt_graph g;
        pt_err err = {{0}};
        table_graph(&g, c);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "%s: the test graph is invalid: %s", c->name, err.msg);
        static uint8_t want[4096], got[4096];
        bool fuses = table_fuses(c);
        int nw = fuses ? run_table(&g, want, sizeof want) : 0;
        pc_remove_noops(&g); /* as petrel_compile: a scale of 1 goes first (unless a result) */
        int fused = pc_fuse(&g);
        pc_dce(&g);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "%s: invalid after fusion: %s", c->name, err.msg);
        int tabs = count_op(&g, PETREL_OP_PETREL_ROPE_TABLE);
        CHECK(fused == fuses && tabs == fuses && (!fuses || g.nnodes == 1 + (c->variant == TV_POS_WRITTEN)),
              "%s: %d fused, %d rope_table, %d nodes left (want %s)", c->name, fused, tabs, (int)g.nnodes,
              fuses ? "one node" : "no fusion");
        if (fuses) { /* the same bytes */
            int ng = run_table(&g, got, sizeof got);
            CHECK(nw > 0 && ng == nw, "%s: ran to %d and %d bytes (%s)", c->name, nw, ng, run_error);
            CHECK(nw > 0 && ng == nw && !memcmp(want, got, (size_t)nw), "%s: the fused tables differ", c->name);
        }
        pt_graph_free(&g);
    }
    /* the CPU kernel's checks: positions (B, L), tables of the dtype argument's dtype */
    for (int bad = 0; bad < 2; bad++) {
        pt_graph g;
        tg_init(&g);
        int32_t inv = tg_value(&g, "inv_freq", PT_SRC_USER_INPUT, PETREL_DTYPE_F32, 1, DIMS(4));
        int32_t pos = bad ? tg_value(&g, "positions", PT_SRC_USER_INPUT, PETREL_DTYPE_I64, 2, DIMS(1, 3))
                          : tg_value(&g, "positions", PT_SRC_USER_INPUT, PETREL_DTYPE_I64, 1, DIMS(3));
        int32_t n = mk(&g, PETREL_OP_PETREL_ROPE_TABLE, PETREL_DTYPE_F32, 3, DIMS(1, 3, 8));
        int32_t s = tg_value(&g, "sin", PT_SRC_NODE, PETREL_DTYPE_F32, 3, DIMS(1, 3, 8));
        pt_node *rn = &g.nodes[n];
        rn->outs = pt_realloc(rn->outs, 2 * sizeof *rn->outs);
        rn->outs[1] = s, rn->nout = 2;
        a_t(&g, n, 0, inv), a_t(&g, n, 1, pos), a_f(&g, n, 2, 1.0);
        if (bad) a_dt(&g, n, 3, PETREL_DTYPE_BF16);
        add_output(&g, out_of(&g, n));
        add_output(&g, s);
        uint8_t buf[256];
        const char *why = bad ? "both tables must have" : "rope_table needs";
        CHECK(run_table(&g, buf, sizeof buf) < 0 && strstr(run_error, why),
              "rope_table with bad arguments (%d): ran, or failed for another reason: %s", bad, run_error);
        pt_graph_free(&g);
    }
}

/* ---- 3. the LLM fixtures -------------------------------------------------------- */

/* The data nodes before the first norm or linear of each compiled LLM
 * fixture.  The float32 export forms keep a float32 -> float32 cast of
 * the embedding (the first norm's input); Gemma 3 scales the embedding
 * and builds a sliding-window mask. */
static const struct {
    const char *fixture, *prologue;
} prologues[] = {
#define LLAMA_E "aten.embedding.default aten.arange.default aten.add.Tensor aten.le.Tensor petrel.rope_table"
#define LLAMA_A "aten.embedding.default aten.arange.start_step aten.add.Tensor aten.le.Tensor petrel.rope_table"
    {"llama_export", LLAMA_E " aten.to.dtype"},
    {"llama_aten", LLAMA_A},
    {"llama_bf16_export", LLAMA_E},
    {"llama_bf16_aten", LLAMA_A},
    {"llama_fp16_aten", LLAMA_A},
    {"qwen3_export", LLAMA_E " aten.to.dtype"},
    {"qwen3_aten", LLAMA_A},
    {"qwen3_moe_export", LLAMA_E " aten.to.dtype"},
    {"qwen3_moe_aten", LLAMA_A},
    {"phi3_export", LLAMA_E " aten.to.dtype"},
    {"phi3_aten", LLAMA_A},
    {"gemma3_export",
     "aten.embedding.default aten.mul.Tensor aten.arange.default aten.add.Tensor aten.le.Tensor "
     "aten.new_ones.default aten.sub.Tensor aten.gt.Tensor aten.to.dtype_layout aten.__and__.Tensor "
     "aten.to.dtype_layout aten.__and__.Tensor petrel.rope_table petrel.rope_table aten.to.dtype"},
    {"gemma3_aten",
     "aten.embedding.default aten.mul.Tensor aten.arange.start_step aten.add.Tensor aten.le.Tensor "
     "aten.sub.Tensor aten.gt.Tensor aten.bitwise_and.Tensor aten.bitwise_and.Tensor petrel.rope_table "
     "petrel.rope_table"},
    {"llm/llama.pt2", LLAMA_E " aten.to.dtype"},
    {"llm/qwen3.pt2", LLAMA_A},
#undef LLAMA_E
#undef LLAMA_A
};

static bool starts_layer(pt_op op) {
    return op == PETREL_OP_PETREL_LINEAR_N || op == PETREL_OP_LINEAR || op == PETREL_OP_PETREL_RMS_NORM ||
           op == PETREL_OP_PETREL_GATED_LINEAR || op == PETREL_OP_PETREL_QLINEAR;
}

/* Is node n x * 1 or x / 1 of x's dtype (what pc_remove_noops removes)? */
static bool unit_factor(const pt_graph *g, const pt_node *n) {
    if (n->op != PETREL_OP_MUL_TENSOR && n->op != PETREL_OP_DIV_TENSOR) return false;
    for (int a = n->op == PETREL_OP_DIV_TENSOR; a < 2; a++) {
        const pt_arg *one = &n->args[a], *x = &n->args[1 - a];
        if (one->n == 1 && one->items[0].vid < 0 && one->kind != PT_ARG_TENSOR && one->items[0].f == 1.0 &&
            x->kind == PT_ARG_TENSOR && g->values[x->items[0].vid].dtype == g->values[n->outs[0]].dtype)
            return true;
    }
    return false;
}

static void test_fixture(const char *fixture, const char *want) {
    char in[256];
    snprintf(in, sizeof in, strchr(fixture, '/') ? "tests/fixtures/%s" : "tests/fixtures/%s/model.pt2", fixture);
    petrel_compile_report r;
    if (petrel_compile(&r, in, out_path, NULL) != PETREL_OK) {
        CHECK(0, "%s: compile: %s", fixture, petrel_last_error());
        return;
    }
    pt_mapping map;
    pt_err err = {{0}};
    pt_graph g;
    memset(&g, 0, sizeof g);
    if (pt_map_file(&map, out_path, &err) != PETREL_OK || pf_read(&g, map.data, map.size, false, &err) != PETREL_OK) {
        CHECK(0, "%s: %s", fixture, err.msg);
        remove(out_path);
        return;
    }
    char got[1024] = "";
    size_t o = 0;
    int units = 0;
    bool layer = false;
    for (int32_t i = 0; i < g.nnodes; i++) {
        const pt_node *n = &g.nodes[i];
        units += unit_factor(&g, n);
        layer |= starts_layer(n->op);
        if (!layer && !pt_op_is_meta(n->op) && o < sizeof got)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%s", o ? " " : "", pt_op_table[n->op].target);
    }
    CHECK(!strcmp(got, want), "%s: the prologue is\n  %s\nwant\n  %s", fixture, got, want);
    CHECK(units == 0, "%s: %d multiplications by 1 left", fixture, units);
    pt_graph_free(&g);
    pt_unmap_file(&map);
    remove(out_path);
}

int main(void) {
    test_unit_factors();
    test_rope_table();
    for (size_t i = 0; i < sizeof prologues / sizeof prologues[0]; i++)
        test_fixture(prologues[i].fixture, prologues[i].prologue);
    printf("test_prologue: %zu no-op cases, %zu rotary-table cases, %zu LLM fixtures, %d failures\n",
           (size_t)11, sizeof tables / sizeof tables[0], sizeof prologues / sizeof prologues[0], failures);
    return failures ? 1 : 0;
}
