/*
** test_fusion.c -- the compiler's pattern fusion (src/compiler/fuse.c),
** white-box.  1. Every tiny LLM fixture, in both export forms, compiles to
** a program whose graph holds the fused ops (petrel.rms_norm, petrel.rope,
** petrel.sdpa_cache) in the numbers its architecture implies, with no
** attention left decomposed: no _softmax, no scaled_dot_product_attention,
** no index_copy_/index_put, no KV-cache buffer mutation, no bmm and
** softmax but those outside attention (rotary frequencies, MoE routing and
** experts).  2. RMSNorm op fixtures: the decomposed chain (casts included)
** and aten.rms_norm over the last dim become one petrel.rms_norm.
** 3. Fusion is conservative: an intermediate that is a graph result
** blocks exactly the match it belongs to.  That the fused kernels compute
** what torch did is the fixture suite's job (compiled fixtures compare
** with torch).  4. Out of memory at any allocation of the pass leaves a
** valid graph, fused or not (run under ASan this also checks for leaks).
** Covers the petrel.* ops for test_op_coverage.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compiler.h"
#include "format/format.h"
#include "petrel.h"
#include "pt2/pt2.h"

static const char *out_path = "build-test-fusion.petrel";
#include "check.h"

typedef struct fusion_case {
    const char *fixture;
    int layers;
    int norms_per_layer; /* RMSNorms in a decoder layer (final norm: one more) */
    int other_bmm;       /* bmm outside attention: rotary frequencies (aten
                            form), MoE experts */
    int other_softmax;   /* _softmax outside attention: MoE routing (aten form) */
    /* fused linears per layer (export form only: core-ATen linears are
     * permute + mm): q/k/v read as one, the gated MLP input, residual adds
     * (Gemma 3 normalizes before each add; Phi-3 has q/k/v and gate/up
     * pre-merged; Qwen3-MoE's experts are not a plain gated MLP) */
    int linear_n, gated, linear_add;
} fusion_case;

static const fusion_case cases[] = {
    {"llama_export", 2, 2, 0, 0, 1, 1, 2},     {"llama_aten", 2, 2, 1, 0, 0, 0, 0},     {"llama_bf16_aten", 2, 2, 1, 0, 0, 0, 0},
    {"llama_bf16_export", 2, 2, 0, 0, 1, 1, 2},
    {"llama_fp16_aten", 2, 2, 1, 0, 0, 0, 0},           {"qwen3_export", 2, 4, 0, 0, 1, 1, 2},
    {"qwen3_aten", 2, 4, 1, 0, 0, 0, 0},                {"qwen3_moe_export", 2, 4, 4, 0, 1, 0, 1},
    {"qwen3_moe_aten", 2, 4, 5, 2, 0, 0, 0},            {"gemma3_export", 2, 6, 0, 0, 1, 1, 0},
    {"gemma3_aten", 2, 6, 2, 0, 0, 0, 0},               {"phi3_export", 2, 2, 0, 0, 0, 0, 2},
    {"phi3_aten", 2, 2, 1, 0, 0, 0, 0},
};

static int count_op(const pt_graph *g, pt_op op) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++) c += g->nodes[i].op == op;
    return c;
}

/* Buffer mutations of rank-4 buffers (the KV caches) still in the graph. */
static int cache_mutations(const pt_graph *g) {
    int c = 0;
    for (int32_t i = 0; i < g->nmuts; i++) c += g->values[g->muts[i].buffer_vid].rank == 4;
    return c;
}

/* The graph checks shared by compiled programs and fused imports. */
static void check_fused(const char *name, const pt_graph *g, int rms, int rope, int sdpa, int bmm, int softmax) {
    CHECK(count_op(g, PETREL_OP_PETREL_RMS_NORM) == rms, "%s: %d rms_norm, want %d", name,
          count_op(g, PETREL_OP_PETREL_RMS_NORM), rms);
    CHECK(count_op(g, PETREL_OP_PETREL_ROPE) == rope, "%s: %d rope, want %d", name,
          count_op(g, PETREL_OP_PETREL_ROPE), rope);
    CHECK(count_op(g, PETREL_OP_PETREL_SDPA_CACHE) == sdpa, "%s: %d sdpa_cache, want %d", name,
          count_op(g, PETREL_OP_PETREL_SDPA_CACHE), sdpa);
    CHECK(count_op(g, PETREL_OP_BMM) == bmm, "%s: %d bmm left, want %d (none in attention)", name,
          count_op(g, PETREL_OP_BMM), bmm);
    CHECK(count_op(g, PETREL_OP_SOFTMAX_) == softmax, "%s: %d _softmax left, want %d (none in attention)", name,
          count_op(g, PETREL_OP_SOFTMAX_), softmax);
    static const pt_op gone[] = {PETREL_OP_SDPA, PETREL_OP_INDEX_COPY_, PETREL_OP_INDEX_COPY,
                                 PETREL_OP_INDEX_PUT, PETREL_OP_INDEX_PUT_, PETREL_OP_RSQRT};
    for (size_t k = 0; k < sizeof gone / sizeof gone[0]; k++)
        CHECK(count_op(g, gone[k]) == 0, "%s: %d %s left", name, count_op(g, gone[k]), pt_op_table[gone[k]].target);
    CHECK(cache_mutations(g) == 0, "%s: %d KV-cache mutations left", name, cache_mutations(g));
    /* every cache is written by exactly one fused attention */
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        if (n->op != PETREL_OP_PETREL_SDPA_CACHE) continue;
        for (int a = 3; a <= 4; a++) {
            int32_t b = n->args[a].items[0].vid;
            CHECK(g->values[b].src == PT_SRC_BUFFER && g->values[b].rank == 4, "%s: cache argument is not a buffer", name);
            int writers = 0;
            for (int32_t j = 0; j < g->nnodes; j++)
                if (g->nodes[j].op == PETREL_OP_PETREL_SDPA_CACHE)
                    writers += g->nodes[j].args[3].items[0].vid == b || g->nodes[j].args[4].items[0].vid == b;
            CHECK(writers == 1, "%s: cache '%s' written by %d fused attentions", name, g->values[b].name, writers);
        }
    }
}

/* 1. Compile, read the program back, count. */
static void test_compiled(const fusion_case *c) {
    char in[256];
    snprintf(in, sizeof in, "tests/fixtures/%s/model.pt2", c->fixture);
    petrel_compile_report r;
    if (petrel_compile(&r, in, out_path, NULL) != PETREL_OK) {
        CHECK(0, "%s: compile: %s", c->fixture, petrel_last_error());
        return;
    }
    int rms = c->norms_per_layer * c->layers + 1, rope = 2 * c->layers, sdpa = c->layers;
    int lin = c->layers * (c->linear_n + c->gated + c->linear_add);
    CHECK(r.fused == rms + rope + sdpa + lin, "%s: report says %lld fused ops, want %d", c->fixture,
          (long long)r.fused, rms + rope + sdpa + lin);
    pt_mapping map;
    pt_err err = {{0}};
    pt_graph g;
    memset(&g, 0, sizeof g);
    if (pt_map_file(&map, out_path, &err) != PETREL_OK) {
        CHECK(0, "%s: %s", c->fixture, err.msg);
        return;
    }
    if (pf_read(&g, map.data, map.size, false, &err) != PETREL_OK) {
        CHECK(0, "%s: reading the program: %s", c->fixture, err.msg);
    } else {
        check_fused(c->fixture, &g, rms, rope, sdpa, c->other_bmm, c->other_softmax);
        static const pt_op lops[3] = {PETREL_OP_PETREL_LINEAR_N, PETREL_OP_PETREL_GATED_LINEAR,
                                      PETREL_OP_PETREL_LINEAR_ADD};
        const int want[3] = {c->linear_n, c->gated, c->linear_add};
        for (int k = 0; k < 3; k++)
            CHECK(count_op(&g, lops[k]) == c->layers * want[k], "%s: %d %s, want %d", c->fixture,
                  count_op(&g, lops[k]), pt_op_table[lops[k]].target, c->layers * want[k]);
        pt_graph_free(&g);
    }
    pt_unmap_file(&map);
    remove(out_path);
}

/* 2. Single-op fixtures: (fused ops made, nodes left). */
typedef struct op_case {
    const char *fixture;
    int fused, nodes;
} op_case;

static const op_case op_cases[] = {
    {"rms_norm_fn_aten", 1, 1},          /* pow, mean, add, rsqrt, mul, mul(w) */
    {"rms_norm_bf16_aten", 1, 1},        /* the same between _to_copy(f32) and back to bf16 */
    {"rms_norm_module_aten", 1, 1},
    {"rms_norm_fn_export", 1, 1},        /* aten.rms_norm */
    {"rms_norm_bf16_export", 1, 1},
    {"rms_norm_fn_noweight_aten", 0, 5}, /* mean over two dims: not an RMSNorm over the last dim */
    {"rms_norm_fn_noweight_export", 0, 1},
    {"fused_rms_norm_aten", 0, 6},       /* the rsqrt is also an output (rstd) */
};

static void test_op_fixture(const op_case *c) {
    char in[256];
    snprintf(in, sizeof in, "tests/fixtures/%s/model.pt2", c->fixture);
    petrel_compile_report r;
    if (petrel_compile(&r, in, out_path, NULL) != PETREL_OK) {
        CHECK(0, "%s: compile: %s", c->fixture, petrel_last_error());
        return;
    }
    remove(out_path);
    CHECK(r.fused == c->fused && r.nodes_out == c->nodes, "%s: %lld fused, %lld nodes; want %d, %d", c->fixture,
          (long long)r.fused, (long long)r.nodes_out, c->fused, c->nodes);
}

/* Import a fixture's graph with no-ops removed (the state fusion sees). */
static bool import(const char *fixture, pt_mapping *map, pz_archive *z, pt_graph *g) {
    char in[256];
    pt_err err = {{0}};
    snprintf(in, sizeof in, "tests/fixtures/%s/model.pt2", fixture);
    memset(g, 0, sizeof *g);
    if (pt_map_file(map, in, &err) != PETREL_OK) return false;
    if (pz_open_memory(z, map->data, map->size, &err) != PETREL_OK) {
        pt_unmap_file(map);
        return false;
    }
    if (pt2_import(g, z, &err) != PETREL_OK) {
        printf("%s: %s\n", fixture, err.msg);
        pz_close(z);
        pt_unmap_file(map);
        return false;
    }
    pc_remove_noops(g);
    return true;
}

/* Make the first value produced by an `op` node a user output too. */
static bool expose_first(pt_graph *g, pt_op op) {
    for (int32_t i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].op != op) continue;
        pt_user_output *o = pt_realloc(g->outputs, (size_t)(g->noutputs + 1) * sizeof *o);
        if (!o) return false;
        g->outputs = o;
        g->outputs[g->noutputs++] = (pt_user_output){{g->nodes[i].outs[0], 0, 0}, PT_V_TENSOR};
        return true;
    }
    return false;
}

/* 3. A read from outside a match blocks that match only. */
static void test_conservative(void) {
    pt_mapping map;
    pz_archive z;
    pt_graph g;
    pt_err err = {{0}};
    /* an RMSNorm's rsqrt is also a result: 4 of 5 norms fuse */
    if (import("llama_export", &map, &z, &g)) {
        CHECK(expose_first(&g, PETREL_OP_RSQRT), "llama_export: no rsqrt");
        int fused = pc_fuse(&g);
        pc_dce(&g);
        CHECK(fused == 4 + 4 + 2 + 8, "llama_export with a norm's rsqrt exposed: %d fused", fused);
        CHECK(count_op(&g, PETREL_OP_PETREL_RMS_NORM) == 4 && count_op(&g, PETREL_OP_RSQRT) == 1,
              "llama_export: the exposed norm must stay unfused");
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "llama_export: %s", err.msg);
        pt_graph_free(&g);
        pz_close(&z);
        pt_unmap_file(&map);
    }
    /* a gated MLP's activation is also a result: that layer's gate and up
     * projections are read as one petrel.linear_n instead */
    if (import("llama_export", &map, &z, &g)) {
        CHECK(expose_first(&g, PETREL_OP_SILU), "llama_export: no silu");
        int fused = pc_fuse(&g);
        pc_dce(&g);
        CHECK(fused == 5 + 4 + 2 + 8, "llama_export with an activation exposed: %d fused", fused);
        CHECK(count_op(&g, PETREL_OP_PETREL_GATED_LINEAR) == 1 && count_op(&g, PETREL_OP_PETREL_LINEAR_N) == 3 &&
                  count_op(&g, PETREL_OP_SILU) == 1,
              "llama_export: the exposed activation's MLP must stay unfused");
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "llama_export: %s", err.msg);
        pt_graph_free(&g);
        pz_close(&z);
        pt_unmap_file(&map);
    }
    /* a cache update is also a result (aten form): that layer's attention
     * stays decomposed with its mutations, the other fuses */
    if (import("llama_aten", &map, &z, &g)) {
        int32_t muts = g.nmuts;
        CHECK(expose_first(&g, PETREL_OP_INDEX_PUT), "llama_aten: no index_put");
        int fused = pc_fuse(&g);
        pc_dce(&g);
        CHECK(fused == 5 + 4 + 1, "llama_aten with a cache update exposed: %d fused", fused);
        CHECK(count_op(&g, PETREL_OP_PETREL_SDPA_CACHE) == 1 && count_op(&g, PETREL_OP_SOFTMAX_) == 1 &&
                  count_op(&g, PETREL_OP_INDEX_PUT) == 2,
              "llama_aten: the exposed layer must stay unfused");
        CHECK(g.nmuts == muts - 2, "llama_aten: %d mutations, want %d", g.nmuts, muts - 2);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "llama_aten: %s", err.msg);
        pt_graph_free(&g);
        pz_close(&z);
        pt_unmap_file(&map);
    }
    /* the verifier lets the fused attention write state buffers only */
    if (import("qwen3_export", &map, &z, &g)) {
        CHECK(pc_fuse(&g) == 9 + 4 + 2 + 8, "qwen3_export: fused count");
        pc_dce(&g);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "qwen3_export: %s", err.msg);
        int32_t weight = -1;
        for (int32_t v = 0; v < g.nvalues && weight < 0; v++)
            if (g.values[v].src == PT_SRC_PARAM) weight = v;
        for (int32_t i = 0; i < g.nnodes; i++)
            if (g.nodes[i].op == PETREL_OP_PETREL_SDPA_CACHE) {
                g.nodes[i].args[4].items[0].vid = weight;
                break;
            }
        CHECK(pt_graph_verify(&g, &err) == PETREL_ERR_FORMAT && strstr(err.msg, "state buffer"),
              "qwen3_export: a fused attention writing a weight must not verify");
        pt_graph_free(&g);
        pz_close(&z);
        pt_unmap_file(&map);
    }
    /* a graph without the patterns is left alone */
    if (import("mlp_dynamic_batch_export", &map, &z, &g)) {
        int32_t n = g.nnodes;
        CHECK(pc_fuse(&g) == 0 && g.nnodes == n, "mlp: fused something");
        pt_graph_free(&g);
        pz_close(&z);
        pt_unmap_file(&map);
    }
}

/* 4. Every allocation of pc_fuse failing once. */
static void test_out_of_memory(const char *fixture) {
    pt_mapping map;
    pz_archive z;
    pt_graph g;
    pt_err err = {{0}};
    if (!import(fixture, &map, &z, &g)) return;
    pt_alloc_fail_at(0);
    pc_fuse(&g);
    int64_t total = pt_alloc_fail_at(0);
    pt_graph_free(&g);
    pz_close(&z);
    pt_unmap_file(&map);
    int bad = 0;
    CHECK(total > 0, "%s: pc_fuse allocated nothing", fixture);
    for (int64_t n = 1; n <= total && bad < 3; n++) {
        if (!import(fixture, &map, &z, &g)) return;
        pt_alloc_fail_at(n);
        pc_fuse(&g);
        pt_alloc_fail_at(0);
        pc_dce(&g);
        if (pt_graph_verify(&g, &err) != PETREL_OK) {
            CHECK(0, "%s: allocation %lld of %lld failing leaves a bad graph: %s", fixture, (long long)n,
                  (long long)total, err.msg);
            bad++;
        }
        pt_graph_free(&g);
        pz_close(&z);
        pt_unmap_file(&map);
    }
}

int main(void) {
    size_t nc = sizeof cases / sizeof cases[0], no = sizeof op_cases / sizeof op_cases[0];
    for (size_t i = 0; i < nc; i++) test_compiled(&cases[i]);
    for (size_t i = 0; i < no; i++) test_op_fixture(&op_cases[i]);
    test_conservative();
    test_out_of_memory("llama_aten");
    printf("test_fusion: %zu model and %zu op fixtures, %d failure%s\n", nc, no, failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
