/*
** test_fold.c -- constant folding (src/compiler/fold.c), white-box.
** 1. A hand-built graph: a cast of a constant, full/arange with literal
**    arguments and a view chain of a constant fold; the folded bytes equal
**    what the CPU kernels compute (core's conversions, round once) and the
**    graph verifies.  Must-not cases stay: a cast of a user input, a cast
**    whose result an in-place op writes (also through a view), a result
**    over 1 MiB, a graph result.
** 2. Every LLM fixture compiles and verifies after folding; the number of
**    nodes folded is printed; with any one allocation of the pass failing
**    the graph still verifies.  That the compiled programs compute what
**    torch did is the fixture suite's job (fixtures_compiled).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compiler.h"
#include "pt2/pt2.h"

#include "check.h"
#include "graph_util.h"

/* ---- 1. a hand-built graph ------------------------------------------------- */

/* A node of op with n schema arguments defaulted to NONE, one result. */
static pt_node *add_node(pt_graph *g, pt_op op, int nargs, int32_t out) { return tg_node(g, op, nargs, 1, &out); }

static void set_arg(pt_node *n, int a, pt_arg_kind kind, int32_t vid, int64_t i, double f) {
    n->args[a].kind = kind;
    n->args[a].n = 1;
    n->args[a].items = calloc(1, sizeof(pt_item));
    n->args[a].items[0] = (pt_item){vid, i, f};
}

static bool is_folded(const pt_graph *g, int32_t v) { return g->values[v].src == PT_SRC_CONST && g->values[v].data; }

static void test_graph(void) {
    pt_graph g;
    memset(&g, 0, sizeof g);
    g.values = calloc(32, sizeof *g.values);
    static float cdata[6] = {0.1f, -2.5f, 3.3333333f, 1e-3f, 65504.5f, -0.0f};
    static float big[(1 << 18) + 16];
    int64_t s6 = 6, s23[2] = {2, 3}, s123[3] = {1, 2, 3}, s423[3] = {4, 2, 3}, sbig = (1 << 18) + 16, s5 = 5;
    int32_t c = tg_value(&g, "c", PT_SRC_CONST, PETREL_DTYPE_F32, 1, &s6);
    g.values[c].data = (const uint8_t *)cdata;
    g.values[c].data_bytes = sizeof cdata;
    int32_t cb = tg_value(&g, "cbig", PT_SRC_CONST, PETREL_DTYPE_F32, 1, &sbig);
    g.values[cb].data = (const uint8_t *)big;
    g.values[cb].data_bytes = sizeof big;
    int32_t x = tg_value(&g, "x", PT_SRC_USER_INPUT, PETREL_DTYPE_F32, 1, &s6);
    int32_t cast = tg_value(&g, "cast", PT_SRC_NODE, PETREL_DTYPE_BF16, 1, &s6);
    int32_t view = tg_value(&g, "view", PT_SRC_NODE, PETREL_DTYPE_BF16, 2, s23);
    int32_t unsq = tg_value(&g, "unsq", PT_SRC_NODE, PETREL_DTYPE_BF16, 3, s123);
    int32_t expd = tg_value(&g, "expd", PT_SRC_NODE, PETREL_DTYPE_BF16, 3, s423);
    int32_t full = tg_value(&g, "full", PT_SRC_NODE, PETREL_DTYPE_F16, 2, s23);
    int32_t ar = tg_value(&g, "ar", PT_SRC_NODE, PETREL_DTYPE_F32, 1, &s5);
    int32_t xcast = tg_value(&g, "xcast", PT_SRC_NODE, PETREL_DTYPE_BF16, 1, &s6);
    int32_t wcast = tg_value(&g, "wcast", PT_SRC_NODE, PETREL_DTYPE_F32, 1, &s6);
    int32_t wview = tg_value(&g, "wview", PT_SRC_NODE, PETREL_DTYPE_F32, 2, s23);
    int32_t wmul = tg_value(&g, "wmul", PT_SRC_NODE, PETREL_DTYPE_F32, 2, s23);
    int32_t bigc = tg_value(&g, "bigcast", PT_SRC_NODE, PETREL_DTYPE_F32, 1, &sbig);
    int32_t outc = tg_value(&g, "outcast", PT_SRC_NODE, PETREL_DTYPE_F16, 1, &s6);
    for (int i = 0; i < (1 << 18) + 16; i++) big[i] = (float)i;

    pt_node *n = add_node(&g, PETREL_OP_TO_DTYPE, 5, cast);
    set_arg(n, 0, PT_ARG_TENSOR, c, 0, 0);
    set_arg(n, 1, PT_ARG_DTYPE, -1, PETREL_DTYPE_BF16, 0);
    n = add_node(&g, PETREL_OP_VIEW, 2, view);
    set_arg(n, 0, PT_ARG_TENSOR, cast, 0, 0);
    n = add_node(&g, PETREL_OP_UNSQUEEZE, 2, unsq);
    set_arg(n, 0, PT_ARG_TENSOR, view, 0, 0);
    set_arg(n, 1, PT_ARG_INT, -1, 0, 0);
    n = add_node(&g, PETREL_OP_EXPAND, 3, expd);
    set_arg(n, 0, PT_ARG_TENSOR, unsq, 0, 0);
    n = add_node(&g, PETREL_OP_FULL, 6, full);
    set_arg(n, 1, PT_ARG_FLOAT, -1, 0, 0.1);
    n = add_node(&g, PETREL_OP_ARANGE_START_STEP, 7, ar);
    set_arg(n, 0, PT_ARG_FLOAT, -1, 0, 0.5);
    set_arg(n, 1, PT_ARG_INT, -1, 3, 0);
    set_arg(n, 2, PT_ARG_FLOAT, -1, 0, 0.6);
    /* must not: a user input, an in-place write through a view, too large, a graph result */
    n = add_node(&g, PETREL_OP_TO_DTYPE, 5, xcast);
    set_arg(n, 0, PT_ARG_TENSOR, x, 0, 0);
    n = add_node(&g, PETREL_OP_TO_DTYPE, 5, wcast);
    set_arg(n, 0, PT_ARG_TENSOR, c, 0, 0);
    n = add_node(&g, PETREL_OP_VIEW, 2, wview);
    set_arg(n, 0, PT_ARG_TENSOR, wcast, 0, 0);
    n = add_node(&g, PETREL_OP_MUL__SCALAR, 2, wmul);
    set_arg(n, 0, PT_ARG_TENSOR, wview, 0, 0);
    set_arg(n, 1, PT_ARG_FLOAT, -1, 0, 2.0);
    n = add_node(&g, PETREL_OP_TO_DTYPE, 5, bigc);
    set_arg(n, 0, PT_ARG_TENSOR, cb, 0, 0);
    n = add_node(&g, PETREL_OP_TO_DTYPE, 5, outc);
    set_arg(n, 0, PT_ARG_TENSOR, c, 0, 0);
    g.outputs = calloc(1, sizeof *g.outputs);
    g.outputs[0] = (pt_user_output){{outc, 0, 0}, PT_V_TENSOR};
    g.noutputs = 1;

    pc_dtype_result own = {0};
    int folded = pc_fold(&g, &own);
    CHECK(folded == 6, "folded %d nodes, expected 6", folded);
    CHECK(is_folded(&g, cast) && is_folded(&g, view) && is_folded(&g, unsq) && is_folded(&g, expd) &&
              is_folded(&g, full) && is_folded(&g, ar),
          "a foldable result is not a constant");
    CHECK(!is_folded(&g, xcast) && !is_folded(&g, wcast) && !is_folded(&g, wview) && !is_folded(&g, bigc) &&
              !is_folded(&g, outc),
          "a must-not case was folded");
    CHECK(g.nnodes == 6 && own.nblobs == 3, "%d nodes left, %d blobs", g.nnodes, own.nblobs);
    /* the values, element by element as the kernels store them */
    for (int64_t i = 0; i < 4 * 6; i++) {
        const pt_value *e = &g.values[expd];
        int64_t a = i / 6, b = i / 3 % 2, k = i % 3;
        const uint8_t *p = e->data + 2 * (e->storage_offset + a * e->strides[0] + b * e->strides[1] + k * e->strides[2]);
        uint8_t want[2];
        pt_store_f64(want, PETREL_DTYPE_BF16, cdata[b * 3 + k]);
        CHECK(!memcmp(p, want, 2), "expand element %lld differs", (long long)i);
    }
    uint8_t want[4];
    pt_store_f64(want, PETREL_DTYPE_F16, 0.1);
    for (int i = 0; i < 6; i++) CHECK(!memcmp(g.values[full].data + 2 * i, want, 2), "full element %d differs", i);
    for (int i = 0; i < 5; i++) {
        pt_store_f64(want, PETREL_DTYPE_F32, 0.5 + 0.6 * i);
        CHECK(!memcmp(g.values[ar].data + 4 * i, want, 4), "arange element %d differs", i);
    }
    pt_graph_free(&g);
    pc_dtype_free(&own);
}

/* ---- 2. the LLM fixtures ----------------------------------------------------- */

/* Import, run the passes before folding, fold with allocation fail_at
 * failing (0: none) and verify.  Returns the allocations the fold made. */
static int64_t test_fixture(const char *name, int64_t fail_at) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s/model.pt2", name);
    pt_err err = {{0}};
    pt_mapping map;
    pz_archive z;
    pt_graph g;
    memset(&g, 0, sizeof g);
    if (pt_map_file(&map, path, &err) != PETREL_OK) {
        CHECK(false, "%s: %s", path, err.msg);
        return 0;
    }
    if (pz_open_memory(&z, map.data, map.size, &err) == PETREL_OK && pt2_import(&g, &z, &err) == PETREL_OK) {
        tg_passes(&g);
        int before = g.nnodes;
        pc_dtype_result own = {0};
        if (fail_at) pt_alloc_fail_at(fail_at);
        int folded = pc_fold(&g, &own);
        int64_t made = pt_alloc_fail_at(0);
        if (!fail_at) {
            printf("%-26s %3d -> %3d nodes, %d folded (%d new byte blobs)\n", name, before, g.nnodes, folded,
                   own.nblobs);
            CHECK(folded > 0, "%s: nothing folded", name);
        }
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "%s (allocation %lld failing): %s", name, (long long)fail_at,
              err.msg);
        pt_graph_free(&g);
        pc_dtype_free(&own);
        pz_close(&z);
        pt_unmap_file(&map);
        return made;
    }
    CHECK(false, "%s: %s", path, err.msg);
    pt_unmap_file(&map);
    return 0;
}

int main(void) {
    test_graph();
    static const char *llms[] = {"llama_export", "llama_aten", "llama_bf16_export", "qwen3_export", "qwen3_aten",
                                 "gemma3_export", "gemma3_aten", "phi3_export", "qwen3_moe_export", "whisper_export"};
    int64_t total = 0; /* the allocations folding llms[0] makes */
    for (size_t i = 0; i < sizeof llms / sizeof llms[0]; i++) {
        int64_t made = test_fixture(llms[i], 0);
        if (i == 0) total = made;
    }
    /* out of memory at any allocation of the pass leaves a valid graph */
    for (int64_t n = 1; n <= total; n++) test_fixture(llms[0], n);
    if (failures) printf("%d failures\n", failures);
    return failures != 0;
}
