/*
** test_fusion.c -- the compiler's pattern fusion (src/compiler/fuse.c),
** white-box.  1. Every tiny LLM fixture, in both export forms, compiles to
** a program whose graph holds the fused ops (petrel.rms_norm,
** petrel.sdpa_cache, petrel.rope_table) in the numbers its architecture
** implies, every attention rotating q and k itself (the two ropes a layer
** are made, then folded in: no petrel.rope left), with no attention left
** decomposed: no _softmax, no scaled_dot_product_attention,
** no index_copy_/index_put, no KV-cache buffer mutation, no bmm and
** softmax but those outside attention (MoE routing), the MoE experts'
** gather + bmm as petrel.expert_linear (compiled for CUDA too, placed
** there), and no
** rotary table left decomposed (no cos, no sin).  2. RMSNorm op fixtures: the decomposed chain (casts included)
** and aten.rms_norm over the last dim become one petrel.rms_norm.
** 3. Fusion is conservative: an intermediate that is a graph result
** blocks exactly the match it belongs to.  That the fused kernels compute
** what torch did is the fixture suite's job (compiled fixtures compare
** with torch).  4. Out of memory at any allocation of the pass leaves a
** valid graph, fused or not (run under ASan this also checks for leaks).
** 5. The rope fold on hand-built graphs: where it happens the program
** computes the same numbers to the bit, and it does not happen when a
** rope is read elsewhere, k has another cos, or cos is written between;
** the CPU kernel rejects half-given or misshapen rope arguments; an
** interleaved rope never folds.  5b. The q/k norm fold likewise, for
** Qwen3's order (norm, then the heads' transpose) and Gemma 3's, and not
** when a norm is also a result or the two norms differ.
** 6. The norm fold: on every LLM fixture (export form) no petrel.rms_norm
** is left that is read only by a linear_n or gated_linear, and the
** linears count the norms they took; on hand-built graphs the folded
** program computes the same numbers to the bit, and nothing folds when
** the norm is read twice or is a result, changes the dtype, has its input
** written between, or meets a linear that normalizes already.
** 7. Canonicalization: the core-ATen form's permute + mm/addmm linears
** become aten.linear (so the compiled aten fixtures above hold the fused
** linears), and not where the transposed weight is read elsewhere.
** 8. Interleaved (GPT-J) RoPE fixtures, both forms: one petrel.rope with
** interleaved=True and none of the rotation's ops left; with its neg also
** a graph result nothing fuses.
** Covers the petrel.* ops for test_op_coverage.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compiler.h"
#include "format/format.h"
#include "petrel.h"
#include "pt2/pt2.h"

static const char *out_path = "build-test-fusion.petrel";
#include "check.h"
#include "graph_util.h"

typedef struct fusion_case {
    const char *fixture;
    int layers;
    int norms_per_layer; /* RMSNorms in a decoder layer (final norm: one more) */
    int experts;         /* MoE experts' products (gather + bmm), all
                            petrel.expert_linear when compiled for the CPU;
                            no bmm is left outside attention (the rotary
                            frequencies' are in petrel.rope_table) */
    int other_softmax;   /* _softmax outside attention: MoE routing (aten form) */
    /* fused linears per layer (the core-ATen form's permute + mm made
     * aten.linear first, canon.c): q/k/v read as one, the gated MLP input,
     * residual adds (Gemma 3 normalizes before each add; Phi-3 has q/k/v
     * and gate/up pre-merged, and its core-ATen form keeps dropout's clone
     * between the linear and the add; Qwen3-MoE's experts are not a plain
     * gated MLP; core ATen writes silu as x * sigmoid(x), so Llama's and
     * Qwen3's gate and up are read as one linear_n there) */
    int linear_n, gated, linear_add;
    /* plain linears per layer that become a linear_n of one weight by
     * taking their norm (Phi-3's merged q/k/v and gate/up projections) */
    int single;
    /* norms per layer folded into those linears as their prologue: the
     * input norm into q/k/v, the post-attention one into the gated MLP
     * (Qwen3-MoE's is reshaped for the router and the experts).  The
     * final norm folds into the LM head (a plain linear: one more
     * linear_n); Gemma 3's post-norms stay. */
    int folded;
    int qk; /* norms per layer folded into the attention: Qwen3's and Gemma 3's q/k norms */
    int tables; /* rotary tables (petrel.rope_table): Gemma 3 has a local and a global one */
} fusion_case;

static const fusion_case cases[] = {
    {"llama_export", 2, 2, 0, 0, 1, 1, 2, 0, 2, 0, 1},    {"llama_aten", 2, 2, 0, 0, 2, 0, 2, 0, 2, 0, 1},
    {"llama_bf16_aten", 2, 2, 0, 0, 2, 0, 2, 0, 2, 0, 1}, {"llama_bf16_export", 2, 2, 0, 0, 1, 1, 2, 0, 2, 0, 1},
    {"llama_fp16_aten", 2, 2, 0, 0, 2, 0, 2, 0, 2, 0, 1}, {"qwen3_export", 2, 4, 0, 0, 1, 1, 2, 0, 2, 2, 1},
    {"qwen3_aten", 2, 4, 0, 0, 2, 0, 2, 0, 2, 2, 1},      {"qwen3_moe_export", 2, 4, 4, 0, 1, 0, 1, 0, 1, 2, 1},
    {"qwen3_moe_aten", 2, 4, 4, 2, 1, 0, 1, 0, 1, 2, 1},  {"gemma3_export", 2, 6, 0, 0, 1, 1, 0, 0, 2, 2, 2},
    {"gemma3_aten", 2, 6, 0, 0, 1, 1, 0, 0, 2, 2, 2},     {"phi3_export", 2, 2, 0, 0, 0, 0, 2, 2, 2, 0, 1},
    {"phi3_aten", 2, 2, 0, 0, 0, 0, 0, 2, 2, 0, 1},
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

/* petrel.sdpa_cache nodes given rope_cos and rope_sin. */
static int rope_attentions(const pt_graph *g) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++)
        c += g->nodes[i].op == PETREL_OP_PETREL_SDPA_CACHE && g->nodes[i].args[9].kind == PT_ARG_TENSOR &&
             g->nodes[i].args[10].kind == PT_ARG_TENSOR;
    return c;
}

/* Argument index of the RMSNorm prologue's `norm` flag of a fused linear
 * (linear_n, gated_linear, qlinear), -1 for other ops. */
static int norm_arg(pt_op op) {
    return op == PETREL_OP_PETREL_LINEAR_N ? 2 : op == PETREL_OP_PETREL_GATED_LINEAR ? 4
                                                : op == PETREL_OP_PETREL_QLINEAR   ? 9
                                                                                   : -1;
}

/* petrel.sdpa_cache nodes with qk_norm on. */
static int qk_attentions(const pt_graph *g) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++)
        c += g->nodes[i].op == PETREL_OP_PETREL_SDPA_CACHE && g->nodes[i].args[11].kind == PT_ARG_BOOL &&
             g->nodes[i].args[11].items[0].i;
    return c;
}

/* Fused linears with the RMSNorm prologue on. */
static int norm_linears(const pt_graph *g) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        int a = norm_arg(g->nodes[i].op);
        c += a >= 0 && g->nodes[i].args[a].kind == PT_ARG_BOOL && g->nodes[i].args[a].items[0].i;
    }
    return c;
}

/* petrel.rms_norm nodes the fold should have taken: read once, as x, by
 * a linear_n or gated_linear (without the prologue) or a bias-free
 * aten.linear, no graph result. */
static int foldable_norms(const pt_graph *g) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].op != PETREL_OP_PETREL_RMS_NORM) continue;
        int32_t v = g->nodes[i].outs[0], reads = 0, reader = -1, as_x = 0;
        for (int32_t j = 0; j < g->nnodes; j++)
            for (int a = 0; a < g->nodes[j].nargs; a++)
                for (int k = 0; k < g->nodes[j].args[a].n; k++)
                    if (g->nodes[j].args[a].items[k].vid == v) reads++, reader = j, as_x += a == 0;
        for (int32_t o = 0; o < g->noutputs; o++) reads += g->outputs[o].item.vid == v;
        const pt_node *r = reader >= 0 ? &g->nodes[reader] : NULL;
        c += reads == 1 && as_x == 1 &&
             (r->op == PETREL_OP_PETREL_LINEAR_N || r->op == PETREL_OP_PETREL_GATED_LINEAR ||
              (r->op == PETREL_OP_LINEAR && (r->nargs < 3 || r->args[2].kind == PT_ARG_NONE)));
    }
    return c;
}

/* The graph checks of a compiled program: `rope` petrel.rope nodes left,
 * `sdpa` attentions of which `sdpa_rope` rotate q and k themselves. */
static void check_fused(const char *name, const pt_graph *g, int rms, int rope, int sdpa, int sdpa_rope, int bmm,
                        int softmax) {
    CHECK(count_op(g, PETREL_OP_PETREL_RMS_NORM) == rms, "%s: %d rms_norm, want %d", name,
          count_op(g, PETREL_OP_PETREL_RMS_NORM), rms);
    CHECK(count_op(g, PETREL_OP_PETREL_ROPE) == rope, "%s: %d rope, want %d", name,
          count_op(g, PETREL_OP_PETREL_ROPE), rope);
    CHECK(count_op(g, PETREL_OP_PETREL_SDPA_CACHE) == sdpa, "%s: %d sdpa_cache, want %d", name,
          count_op(g, PETREL_OP_PETREL_SDPA_CACHE), sdpa);
    CHECK(rope_attentions(g) == sdpa_rope, "%s: %d sdpa_cache take the rope, want %d", name, rope_attentions(g),
          sdpa_rope);
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

/* Compile `in` for `backend` (NULL: the CPU) and read the program back
 * into *g (mapped in *map); false, after a failed CHECK, when either
 * fails.  tg_release undoes it. */
static bool compile_graph(const char *name, const char *in, const char *backend, petrel_compile_report *r,
                          pt_mapping *map, pt_graph *g) {
    petrel_compile_opts o = {.backend = backend};
    char why[600];
    bool ok = tg_compile_read(in, out_path, &o, r, map, g, why, sizeof why);
    CHECK(ok, "%s%s%s: %s", name, backend ? " for " : "", backend ? backend : "", why);
    return ok;
}

/* 1. Compile, read the program back, count. */
static void test_compiled(const fusion_case *c) {
    char in[256];
    snprintf(in, sizeof in, "tests/fixtures/%s/model.pt2", c->fixture);
    petrel_compile_report r;
    pt_mapping map;
    pt_graph g;
    if (!compile_graph(c->fixture, in, NULL, &r, &map, &g)) return;
    /* the ropes are made (and counted), then folded into the attentions;
     * the norms likewise into the linears */
    int rms = c->norms_per_layer * c->layers + 1, rope = 2 * c->layers, sdpa = c->layers;
    int lin = c->layers * (c->linear_n + c->gated + c->linear_add), folded = c->layers * c->folded + 1; /* + LM head */
    CHECK(r.fused == rms + rope + sdpa + lin + c->tables + c->experts, "%s: report says %lld fused ops, want %d",
          c->fixture, (long long)r.fused, rms + rope + sdpa + lin + c->tables + c->experts);
    check_fused(c->fixture, &g, rms - folded - c->layers * c->qk, 0, sdpa, sdpa, 0, c->other_softmax);
    CHECK(count_op(&g, PETREL_OP_PETREL_EXPERT_LINEAR) == c->experts && count_op(&g, PETREL_OP_INDEX_TENSOR) == 0,
          "%s: %d expert_linear (want %d), %d index.Tensor left", c->fixture,
          count_op(&g, PETREL_OP_PETREL_EXPERT_LINEAR), c->experts, count_op(&g, PETREL_OP_INDEX_TENSOR));
    CHECK(qk_attentions(&g) == (c->qk ? sdpa : 0), "%s: %d attentions take the q/k norms, want %d", c->fixture,
          qk_attentions(&g), c->qk ? sdpa : 0);
    CHECK(norm_linears(&g) == folded && foldable_norms(&g) == 0,
          "%s: %d linears take their norm (want %d), %d norms left that could", c->fixture, norm_linears(&g),
          folded, foldable_norms(&g));
    static const pt_op lops[3] = {PETREL_OP_PETREL_LINEAR_N, PETREL_OP_PETREL_GATED_LINEAR,
                                  PETREL_OP_PETREL_LINEAR_ADD};
    const int want[3] = {c->layers * (c->linear_n + c->single) + 1, c->layers * c->gated,
                         c->layers * c->linear_add};
    for (int k = 0; k < 3; k++)
        CHECK(count_op(&g, lops[k]) == want[k], "%s: %d %s, want %d", c->fixture, count_op(&g, lops[k]),
              pt_op_table[lops[k]].target, want[k]);
    /* the rotary tables: one node each, no cos or sin left */
    CHECK(count_op(&g, PETREL_OP_PETREL_ROPE_TABLE) == c->tables && count_op(&g, PETREL_OP_COS) == 0 &&
              count_op(&g, PETREL_OP_SIN) == 0,
          "%s: %d rope_table (want %d), %d cos and %d sin left", c->fixture,
          count_op(&g, PETREL_OP_PETREL_ROPE_TABLE), c->tables, count_op(&g, PETREL_OP_COS),
          count_op(&g, PETREL_OP_SIN));
    /* the core-ATen linears became aten.linear (canon.c) */
    CHECK(count_op(&g, PETREL_OP_MM) == 0 && count_op(&g, PETREL_OP_ADDMM) == 0, "%s: %d mm, %d addmm left",
          c->fixture, count_op(&g, PETREL_OP_MM), count_op(&g, PETREL_OP_ADDMM));
    tg_release(out_path, &map, &g);
    if (!c->experts) return;
    /* compiled for CUDA the experts fuse too, and run there */
    if (!compile_graph(c->fixture, in, "cuda", &r, &map, &g)) return;
    int on_cuda = 0;
    for (int32_t i = 0; i < g.nnodes; i++)
        on_cuda += g.nodes[i].op == PETREL_OP_PETREL_EXPERT_LINEAR && g.nodes[i].device == PT_DEV_CUDA;
    CHECK(r.fused == rms + rope + sdpa + lin + c->tables + c->experts && on_cuda == c->experts &&
              count_op(&g, PETREL_OP_BMM) == 0,
          "%s for cuda: %lld fused ops, %d expert_linear on cuda, %d bmm (want %d, %d, 0)", c->fixture,
          (long long)r.fused, on_cuda, count_op(&g, PETREL_OP_BMM), rms + rope + sdpa + lin + c->tables + c->experts,
          c->experts);
    tg_release(out_path, &map, &g);
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
    /* interleaved (GPT-J) RoPE: slices, neg, stack + flatten (core ATen:
     * unsqueeze + cat + view), muls and the add; partial: the rotated
     * slice, the pass-through slice and the cat too, the cos/sin
     * repeat_interleave (core ATen: unsqueeze, expand, clone, view) stays */
    {"rope_interleaved_export", 1, 1},
    {"rope_interleaved_aten", 1, 1},
    {"rope_interleaved_partial_bf16_export", 1, 5},
    {"rope_interleaved_partial_bf16_aten", 1, 11},
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
    /* an RMSNorm's rsqrt is also a result: 4 of 5 norms fuse, and the 4
     * of them before a linear (the final one: the LM head) fold into it */
    if (import("llama_export", &map, &z, &g)) {
        CHECK(expose_first(&g, PETREL_OP_RSQRT), "llama_export: no rsqrt");
        int fused = pc_fuse(&g);
        pc_dce(&g);
        CHECK(fused == 4 + 4 + 2 + 8 + 1, "llama_export with a norm's rsqrt exposed: %d fused", fused);
        CHECK(count_op(&g, PETREL_OP_PETREL_RMS_NORM) == 0 && norm_linears(&g) == 4 &&
                  count_op(&g, PETREL_OP_RSQRT) == 1,
              "llama_export: the exposed norm must stay unfused");
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "llama_export: %s", err.msg);
        pt_graph_free(&g);
        pz_close(&z);
        pt_unmap_file(&map);
    }
    /* a gated MLP's activation is also a result: that layer's gate and up
     * projections are read as one petrel.linear_n instead (the LM head
     * with the final norm is one more) */
    if (import("llama_export", &map, &z, &g)) {
        CHECK(expose_first(&g, PETREL_OP_SILU), "llama_export: no silu");
        int fused = pc_fuse(&g);
        pc_dce(&g);
        CHECK(fused == 5 + 4 + 2 + 8 + 1, "llama_export with an activation exposed: %d fused", fused);
        CHECK(count_op(&g, PETREL_OP_PETREL_GATED_LINEAR) == 1 && count_op(&g, PETREL_OP_PETREL_LINEAR_N) == 4 &&
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
        CHECK(fused == 5 + 4 + 1 + 1, "llama_aten with a cache update exposed: %d fused", fused);
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
        CHECK(pc_fuse(&g) == 9 + 4 + 2 + 8 + 1, "qwen3_export: fused count");
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

/* 5. The rope fold on hand-built graphs: two petrel.rope feeding a
 * petrel.sdpa_cache (bf16, partial rotary: R 4 of E 6, GQA 2/1) fold
 * into it, and the folded program computes exactly what the ropes did;
 * the fold must not happen when a rope result is read elsewhere, when k
 * is rotated with another cos, or when cos is written in between. */

typedef enum rope_variant {
    RV_PLAIN,           /* folds */
    RV_WRITE_ELSEWHERE, /* an in-place write between, to a temporary: folds */
    RV_Q_RESULT,        /* q's rope is also a graph result */
    RV_K_READ,          /* k's rope is also read by another node */
    RV_OTHER_COS,       /* k rotated with another cos */
    RV_WRITE_COS,       /* cos written in place between the ropes and the attention */
    RV_INTERLEAVED,     /* interleaved ropes (sdpa_cache's own rope is rotate-half) */
} rope_variant;


/* Inputs q (1, 2, 3, 6), k, v (1, 1, 3, 6), cos, sin, cos2 (1, 1, 3, 4),
 * pos (3); caches (1, 1, 8, 6). */
static void rope_graph(pt_graph *g, rope_variant rv) {
    memset(g, 0, sizeof *g);
    g->dialect = pt_strdup("TRAINING");
    g->schema_major = 8;
    petrel_dtype bf = PETREL_DTYPE_BF16;
    int32_t q = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 2, 3, 6));
    int32_t k = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 1, 3, 6));
    int32_t v = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 1, 3, 6));
    int32_t c_in = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 1, 3, 4));
    int32_t s = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 1, 3, 4));
    int32_t c2 = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 1, 3, 4));
    int32_t pos = hv(g, PT_SRC_USER_INPUT, PETREL_DTYPE_I64, 1, DIMS(3));
    int32_t kc = hv(g, PT_SRC_BUFFER, bf, 4, DIMS(1, 1, 8, 6)), vc = hv(g, PT_SRC_BUFFER, bf, 4, DIMS(1, 1, 8, 6));
    int32_t c = HN(g, PETREL_OP_CLONE, c_in, c_in, -1); /* a temporary, so that it may be written */
    int32_t qr = HN(g, PETREL_OP_PETREL_ROPE, q, q, c, s, -2);
    int32_t kr = HN(g, PETREL_OP_PETREL_ROPE, k, k, rv == RV_OTHER_COS ? c2 : c, s, -2);
    if (rv == RV_INTERLEAVED)
        for (int i = 1; i <= 2; i++) g->nodes[g->nnodes - i].args[3].items[0].i = 1;
    if (rv == RV_WRITE_COS) HN(g, PETREL_OP_ADD__TENSOR, c, c, c, -3);
    if (rv == RV_WRITE_ELSEWHERE) {
        int32_t t = HN(g, PETREL_OP_CLONE, pos, pos, -1);
        HN(g, PETREL_OP_ADD__TENSOR, t, t, t, -3);
    }
    int32_t o = HN(g, PETREL_OP_PETREL_SDPA_CACHE, q, qr, kr, v, kc, vc, pos, -1, -1, -2, -1, -1);
    tg_defaults(g);
    int32_t outs[2] = {o, rv == RV_Q_RESULT ? qr : rv == RV_K_READ ? HN(g, PETREL_OP_NEG, kr, kr) : -1};
    g->outputs = pt_calloc(2, sizeof *g->outputs);
    for (int i = 0; i < 2 && outs[i] >= 0; i++)
        g->outputs[g->noutputs++] = (pt_user_output){{outs[i], 0, 0}, PT_V_TENSOR};
}

static char run_error[512]; /* why run_rope_graph failed */

/* Run g (written to a program) twice, at positions 0..2 then 3..5 (its
 * last input), with fixed inputs, appending output 0's elements to out.  Returns their
 * count, -1 on failure (run_error says why). */
static int run_rope_graph(const pt_graph *g, double *out, int max) {
    run_error[0] = 0;
    petrel_program_t *p = tg_load(g, out_path, run_error, sizeof run_error);
    if (!p) return -1;
    int n = 0;
    uint16_t data[8][36]; /* bf16 */
    const int npos = g->ninputs - 1; /* the last input: the positions */
    for (int call = 0; call < 2 && n >= 0; call++) {
        for (int i = 0; i < npos && i < 8; i++) {
            const pt_value *v = &g->values[g->inputs[i]];
            petrel_tensor_desc d = {v->dtype, v->rank, {0}, data[i]};
            for (int r = 0; r < v->rank; r++) d.shape[r] = v->shape[r].lit;
            for (int64_t e = 0; e < petrel_tensor_numel(&d); e++)
                pt_store_f64(&data[i][e], v->dtype, sin(1.7 * (double)(e + 7 * i + 31 * call)));
            if (petrel_program_set_input(p, i, &d) != PETREL_OK) n = -1;
        }
        int64_t pos[3] = {3 * call, 3 * call + 1, 3 * call + 2};
        petrel_tensor_desc pd = {PETREL_DTYPE_I64, 1, {3}, pos};
        petrel_tensor_desc t;
        petrel_value_kind kind;
        if (n < 0 || petrel_program_set_input(p, npos, &pd) != PETREL_OK || petrel_program_execute(p) != PETREL_OK ||
            petrel_program_get_output(&t, p, 0, &kind) != PETREL_OK) {
            snprintf(run_error, sizeof run_error, "%s", petrel_program_error(p));
            n = -1;
            break;
        }
        for (int64_t e = 0; e < petrel_tensor_numel(&t) && n < max; e++) out[n++] = petrel_tensor_get_f64(&t, e);
    }
    petrel_program_free(p);
    remove(out_path);
    return n;
}

static void test_rope_fold(void) {
    static const struct {
        rope_variant rv;
        const char *name;
        bool folds;
    } vs[] = {{RV_PLAIN, "plain", true},
              {RV_WRITE_ELSEWHERE, "a write elsewhere between", true},
              {RV_Q_RESULT, "q's rope also a result", false},
              {RV_K_READ, "k's rope read elsewhere", false},
              {RV_OTHER_COS, "another cos for k", false},
              {RV_WRITE_COS, "cos written between", false},
              {RV_INTERLEAVED, "interleaved ropes", false}};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        pt_graph g;
        pt_err err = {{0}};
        rope_graph(&g, vs[i].rv);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "rope fold, %s: the test graph is invalid: %s", vs[i].name,
              err.msg);
        double want[72], got[72];
        int nw = vs[i].folds ? run_rope_graph(&g, want, 72) : 0, nodes = g.nnodes;
        CHECK(pc_fuse(&g) == 0, "rope fold, %s: a fold counted as a fused op", vs[i].name);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "rope fold, %s: invalid after: %s", vs[i].name, err.msg);
        int rope = vs[i].folds ? 0 : 2;
        CHECK(count_op(&g, PETREL_OP_PETREL_ROPE) == rope && rope_attentions(&g) == vs[i].folds &&
                  g.nnodes == nodes - (2 - rope),
              "rope fold, %s: %d ropes left and %d attentions take them, want %d and %d", vs[i].name,
              count_op(&g, PETREL_OP_PETREL_ROPE), rope_attentions(&g), rope, vs[i].folds);
        if (vs[i].folds) { /* the same numbers, to the bit */
            int ng = run_rope_graph(&g, got, 72);
            CHECK(nw == 72 && ng == nw, "rope fold, %s: ran to %d and %d numbers (%s)", vs[i].name, nw, ng,
                  run_error);
            for (int e = 0; e < nw && e < ng; e++)
                CHECK(want[e] == got[e], "rope fold, %s: number %d is %g, was %g unfolded", vs[i].name, e, got[e],
                      want[e]);
        }
        pt_graph_free(&g);
    }
    /* the CPU kernel's checks of the rope arguments */
    static const struct {
        int32_t cos, sin; /* the attention's rope_cos, rope_sin: a value id or -1 */
        const char *why;
    } bad[] = {{5, -1, "rope_cos and rope_sin go together"},
               {5, 2, "rope of q: cos and sin must share an even last dim"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pt_graph g;
        double got[72];
        rope_graph(&g, RV_OTHER_COS); /* unfolded: value 5 is cos2 (1, 1, 3, 4), 2 is v (1, 1, 3, 6) */
        pt_node *s = &g.nodes[g.nnodes - 1];
        const int32_t set[2] = {bad[i].cos, bad[i].sin};
        for (int a = 0; a < 2; a++)
            if (set[a] >= 0) {
                s->args[9 + a] = (pt_arg){.kind = PT_ARG_TENSOR, .n = 1, .items = pt_calloc(1, sizeof(pt_item))};
                s->args[9 + a].items[0].vid = set[a];
            }
        CHECK(run_rope_graph(&g, got, 72) < 0 && strstr(run_error, bad[i].why),
              "rope arguments %d, %d: ran, or failed for another reason: %s", bad[i].cos, bad[i].sin, run_error);
        pt_graph_free(&g);
    }
}

/* Argument a: tensors vids[0..n) (a list when `list`), a literal, a string. */
static void ha_tensors(pt_node *n, int a, bool list, const int32_t *vids, int count) {
    n->args[a] = (pt_arg){.kind = list ? PT_ARG_TENSORS : PT_ARG_TENSOR, .n = count,
                          .items = pt_calloc((size_t)count, sizeof(pt_item))};
    for (int k = 0; k < count; k++) n->args[a].items[k].vid = vids[k];
}
static void ha_lit(pt_node *n, int a, pt_arg_kind kind, double v) {
    n->args[a] = (pt_arg){.kind = kind, .n = 1, .items = pt_calloc(1, sizeof(pt_item))};
    n->args[a].items[0] = (pt_item){-1, (int64_t)v, v};
}
static void ha_str(pt_node *n, int a, const char *str) { n->args[a] = (pt_arg){.kind = PT_ARG_STRING, .str = pt_strdup(str)}; }

/* 5b. The q/k norm fold on hand-built graphs (bf16, 2 query heads, 1 KV
 * head, E 6, R 4, 3 positions a call): per-head norms of q and k read
 * only by the attention (through the ropes it folded) become its
 * qk_norm, Qwen3's before the heads' transpose (moved first) as Gemma
 * 3's after it, and the program computes the same numbers to the bit;
 * nothing folds when q's norm is also a result or k's has another eps. */
typedef enum qk_variant {
    QK_QWEN,      /* view layout (B, L, H, E): norm, then transpose(1, 2) */
    QK_GEMMA,     /* transpose, then norm (1 + w, in float) */
    QK_Q_RESULT,  /* Qwen3's, q's norm also a graph result */
    QK_OTHER_EPS, /* Qwen3's, k's norm with another eps */
} qk_variant;

/* x (1, 3, H, 6) normalized with w into a (1, H, 3, 6) value. */
static int32_t qk_norm_head(pt_graph *g, qk_variant qv, int32_t x, int32_t w, int H, double eps, int32_t *norm_out) {
    petrel_dtype bf = PETREL_DTYPE_BF16;
    bool gemma = qv == QK_GEMMA;
    int32_t src = x;
    if (gemma) {
        int32_t t = hv(g, PT_SRC_NODE, bf, 4, DIMS(1, H, 3, 6));
        pt_node *tn = tg_node(g, PETREL_OP_TRANSPOSE, 3, 1, &t);
        ha_tensors(tn, 0, false, &x, 1);
        ha_lit(tn, 1, PT_ARG_INT, 1);
        ha_lit(tn, 2, PT_ARG_INT, 2);
        src = t;
    }
    int32_t y = gemma ? hv(g, PT_SRC_NODE, bf, 4, DIMS(1, H, 3, 6)) : hv(g, PT_SRC_NODE, bf, 4, DIMS(1, 3, H, 6));
    pt_node *r = tg_node(g, PETREL_OP_PETREL_RMS_NORM, 5, 1, &y);
    ha_tensors(r, 0, false, &src, 1);
    ha_tensors(r, 1, false, &w, 1);
    ha_lit(r, 2, PT_ARG_FLOAT, eps);
    ha_lit(r, 3, PT_ARG_BOOL, gemma);
    if (!gemma) ha_lit(r, 4, PT_ARG_DTYPE, bf);
    *norm_out = y;
    if (gemma) return y;
    int32_t t = hv(g, PT_SRC_NODE, bf, 4, DIMS(1, H, 3, 6));
    pt_node *tn = tg_node(g, PETREL_OP_TRANSPOSE, 3, 1, &t);
    ha_tensors(tn, 0, false, &y, 1);
    ha_lit(tn, 1, PT_ARG_INT, 1);
    ha_lit(tn, 2, PT_ARG_INT, 2);
    return t;
}

/* Inputs q (1, 3, 2, 6), k (1, 3, 1, 6), v (1, 1, 3, 6), cos, sin (1, 1,
 * 3, 4), the norms' weights (6), pos (3); caches (1, 1, 8, 6). */
static void qk_graph(pt_graph *g, qk_variant qv) {
    memset(g, 0, sizeof *g);
    g->dialect = pt_strdup("TRAINING");
    g->schema_major = 8;
    petrel_dtype bf = PETREL_DTYPE_BF16;
    int32_t q = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 3, 2, 6));
    int32_t k = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 3, 1, 6));
    int32_t v = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 1, 3, 6));
    int32_t c = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 1, 3, 4));
    int32_t s = hv(g, PT_SRC_USER_INPUT, bf, 4, DIMS(1, 1, 3, 4));
    int32_t wq = hv(g, PT_SRC_USER_INPUT, bf, 1, DIMS(6)), wk = hv(g, PT_SRC_USER_INPUT, bf, 1, DIMS(6));
    int32_t pos = hv(g, PT_SRC_USER_INPUT, PETREL_DTYPE_I64, 1, DIMS(3));
    int32_t kc = hv(g, PT_SRC_BUFFER, bf, 4, DIMS(1, 1, 8, 6)), vc = hv(g, PT_SRC_BUFFER, bf, 4, DIMS(1, 1, 8, 6));
    int32_t qn, kn;
    int32_t qh = qk_norm_head(g, qv, q, wq, 2, 1e-6, &qn);
    int32_t kh = qk_norm_head(g, qv, k, wk, 1, qv == QK_OTHER_EPS ? 1e-5 : 1e-6, &kn);
    int32_t qr = HN(g, PETREL_OP_PETREL_ROPE, qh, qh, c, s, -2);
    int32_t kr = HN(g, PETREL_OP_PETREL_ROPE, kh, kh, c, s, -2);
    int32_t o = HN(g, PETREL_OP_PETREL_SDPA_CACHE, qr, qr, kr, v, kc, vc, pos, -1, -1, -2, -1, -1);
    tg_defaults(g);
    int32_t outs[2] = {o, qv == QK_Q_RESULT ? qn : -1};
    g->outputs = pt_calloc(2, sizeof *g->outputs);
    for (int i = 0; i < 2 && outs[i] >= 0; i++)
        g->outputs[g->noutputs++] = (pt_user_output){{outs[i], 0, 0}, PT_V_TENSOR};
}

static void test_qk_norm_fold(void) {
    static const struct {
        qk_variant qv;
        const char *name;
        bool folds;
    } vs[] = {{QK_QWEN, "Qwen3's", true},
              {QK_GEMMA, "Gemma 3's", true},
              {QK_Q_RESULT, "q's norm also a result", false},
              {QK_OTHER_EPS, "k's norm with another eps", false}};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        pt_graph g;
        pt_err err = {{0}};
        qk_graph(&g, vs[i].qv);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "qk norm fold, %s: the test graph is invalid: %s", vs[i].name,
              err.msg);
        double want[72], got[72];
        int nw = run_rope_graph(&g, want, 72), nodes = g.nnodes;
        CHECK(nw == 72, "qk norm fold, %s: the unfolded graph ran to %d numbers (%s)", vs[i].name, nw, run_error);
        CHECK(pc_fuse(&g) == 0, "qk norm fold, %s: a fold counted as a fused op", vs[i].name);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "qk norm fold, %s: invalid after: %s", vs[i].name, err.msg);
        int norms = vs[i].folds ? 0 : 2;
        CHECK(count_op(&g, PETREL_OP_PETREL_RMS_NORM) == norms && qk_attentions(&g) == vs[i].folds &&
                  rope_attentions(&g) == 1 && g.nnodes == nodes - 2 - (2 - norms),
              "qk norm fold, %s: %d norms left, %d attentions take them, %d nodes of %d", vs[i].name,
              count_op(&g, PETREL_OP_PETREL_RMS_NORM), qk_attentions(&g), g.nnodes, nodes);
        int ng = run_rope_graph(&g, got, 72); /* the same numbers, to the bit, folded or not */
        CHECK(ng == nw, "qk norm fold, %s: ran to %d and %d numbers (%s)", vs[i].name, nw, ng, run_error);
        for (int e = 0; e < nw && e < ng; e++)
            CHECK(want[e] == got[e], "qk norm fold, %s: number %d is %g, was %g unfolded", vs[i].name, e, got[e],
                  want[e]);
        pt_graph_free(&g);
    }
}

/* 6. The norm fold on hand-built graphs: a petrel.rms_norm read only by a
 * petrel.linear_n or petrel.gated_linear (bf16 rows (2, 3, 8)) becomes its
 * prologue, and the folded program computes exactly what the norm and the
 * linear did; the fold must not happen when the norm's result is read
 * twice or is a graph result, when the norm changes the dtype, when its
 * input is written in place between, when the linear normalizes
 * already, or when it is a plain aten.linear of a weight that is not a
 * constant (a plain linear of a constant weight, as an LM head, folds:
 * the LLM fixtures above).  A slice of another dim between (an LM head
 * reading the last row only) is moved before the norm and the norm folds;
 * a slice of the last dim keeps it. */

typedef enum norm_variant {
    NV_LINEAR_N,     /* Llama's norm into q/k/v: folds */
    NV_GATED,        /* Gemma's norm (1 + w, in float) into a gated MLP: folds */
    NV_READ_TWICE,   /* the norm also read by a neg */
    NV_RESULT,       /* the norm also a graph result */
    NV_OTHER_DTYPE,  /* bf16 in, f32 out */
    NV_X_WRITTEN,    /* its input written in place between norm and linear */
    NV_NORM_ON,      /* the linear has its prologue on already */
    NV_PLAIN_INPUT,  /* a plain aten.linear whose weight is an input, not a constant */
    NV_SLICED,       /* the norm's rows cut to the last one before the linear (an LM head): folds */
    NV_SLICE_LAST,   /* a slice of the last dim, the norm's, between: no fold */
    NV_SLICED_ON,    /* NV_SLICED into a linear normalizing already: the slice moves, the norm stays */
    NV_SLICED_X_WRITTEN, /* NV_SLICED with the norm's input written in place before the slice: nothing moves */
} norm_variant;

/* Inputs x (2, 3, 8) bf16, the norm's weight (8), the linear's weights
 * (5, 8) and (3, 8) (gated: two (5, 8)); outputs the linear's results. */
static void norm_graph(pt_graph *g, norm_variant nv) {
    memset(g, 0, sizeof *g);
    g->dialect = pt_strdup("TRAINING");
    g->schema_major = 8;
    petrel_dtype bf = PETREL_DTYPE_BF16, ndt = nv == NV_OTHER_DTYPE ? PETREL_DTYPE_F32 : bf;
    bool gated = nv == NV_GATED;
    int32_t x = hv(g, PT_SRC_USER_INPUT, bf, 3, DIMS(2, 3, 8)), nw = hv(g, PT_SRC_USER_INPUT, bf, 1, DIMS(8));
    int32_t w[2] = {hv(g, PT_SRC_USER_INPUT, ndt, 2, DIMS(5, 8)),
                    hv(g, PT_SRC_USER_INPUT, ndt, 2, gated ? DIMS(5, 8) : DIMS(3, 8))};
    if (nv == NV_X_WRITTEN || nv == NV_SLICED_X_WRITTEN)
        x = HN(g, PETREL_OP_CLONE, x, x, -1); /* a temporary, so that it may be written */
    int32_t xn = hv(g, PT_SRC_NODE, ndt, 3, DIMS(2, 3, 8));
    pt_node *r = tg_node(g, PETREL_OP_PETREL_RMS_NORM, 5, 1, &xn);
    ha_tensors(r, 0, false, &x, 1);
    ha_tensors(r, 1, false, &nw, 1);
    ha_lit(r, 2, PT_ARG_FLOAT, gated ? 1e-6 : 1e-5);
    ha_lit(r, 3, PT_ARG_BOOL, gated);
    if (!gated) ha_lit(r, 4, PT_ARG_DTYPE, bf);
    if (nv == NV_X_WRITTEN || nv == NV_SLICED_X_WRITTEN) HN(g, PETREL_OP_ADD__TENSOR, x, x, x, -3);
    const bool cut = nv == NV_SLICED || nv == NV_SLICED_ON || nv == NV_SLICED_X_WRITTEN;
    const int64_t L = cut ? 1 : 3; /* the linear's rows */
    if (cut || nv == NV_SLICE_LAST) { /* x[:, -1:] (dim 1), x[..., 0:8] (dim 2) */
        const bool last = nv == NV_SLICE_LAST;
        int32_t sv = hv(g, PT_SRC_NODE, ndt, 3, DIMS(2, L, 8));
        pt_node *sl = tg_node(g, PETREL_OP_SLICE, 5, 1, &sv);
        ha_tensors(sl, 0, false, &xn, 1);
        ha_lit(sl, 1, PT_ARG_INT, last ? 2 : 1);
        ha_lit(sl, 2, PT_ARG_INT, last ? 0 : -1);
        ha_lit(sl, 3, PT_ARG_INT, 0);
        sl->args[3].items[0].i = last ? 8 : INT64_MAX;
        ha_lit(sl, 4, PT_ARG_INT, 1);
        xn = sv;
    }
    int32_t y[2] = {hv(g, PT_SRC_NODE, ndt, 3, DIMS(2, L, 5)), hv(g, PT_SRC_NODE, ndt, 3, DIMS(2, L, 3))};
    if (nv == NV_PLAIN_INPUT) {
        pt_node *pl = tg_node(g, PETREL_OP_LINEAR, 3, 1, y);
        ha_tensors(pl, 0, false, &xn, 1);
        ha_tensors(pl, 1, false, &w[0], 1);
        g->outputs = pt_calloc(1, sizeof *g->outputs);
        g->outputs[g->noutputs++] = (pt_user_output){{y[0], 0, 0}, PT_V_TENSOR};
        return;
    }
    pt_node *l = tg_node(g, gated ? PETREL_OP_PETREL_GATED_LINEAR : PETREL_OP_PETREL_LINEAR_N, gated ? 9 : 7,
                       gated ? 1 : 2, y);
    ha_tensors(l, 0, false, &xn, 1);
    int base = gated ? 4 : 2;
    if (gated) {
        ha_tensors(l, 1, false, &w[0], 1);
        ha_tensors(l, 2, false, &w[1], 1);
        ha_str(l, 3, "gelu_tanh");
    } else {
        ha_tensors(l, 1, true, w, 2);
    }
    ha_lit(l, base, PT_ARG_BOOL, nv == NV_NORM_ON || nv == NV_SLICED_ON);
    ha_lit(l, base + 2, PT_ARG_FLOAT, 1e-6);
    ha_lit(l, base + 3, PT_ARG_BOOL, 0);
    int32_t outs[4] = {y[0], gated ? -1 : y[1], -1, -1};
    if (nv == NV_READ_TWICE) outs[2] = HN(g, PETREL_OP_NEG, xn, xn);
    if (nv == NV_RESULT) outs[2] = xn;
    g->outputs = pt_calloc(4, sizeof *g->outputs);
    for (int i = 0; i < 4; i++)
        if (outs[i] >= 0) g->outputs[g->noutputs++] = (pt_user_output){{outs[i], 0, 0}, PT_V_TENSOR};
}

/* Run g (written to a program) once with fixed inputs, appending its
 * outputs' elements to out.  Returns their count, -1 on failure
 * (run_error says why). */
static int run_norm_graph(const pt_graph *g, double *out, int max) {
    run_error[0] = 0;
    petrel_program_t *p = tg_load(g, out_path, run_error, sizeof run_error);
    if (!p) return -1;
    int n = 0;
    uint32_t data[4][48]; /* up to 48 elements of up to 4 bytes */
    for (int i = 0; i < g->ninputs && n >= 0; i++) {
        const pt_value *v = &g->values[g->inputs[i]];
        petrel_tensor_desc d = {v->dtype, v->rank, {0}, data[i]};
        for (int r = 0; r < v->rank; r++) d.shape[r] = v->shape[r].lit;
        for (int64_t e = 0; e < petrel_tensor_numel(&d); e++)
            pt_store_f64((uint8_t *)data[i] + e * (int64_t)petrel_dtype_size(v->dtype), v->dtype,
                         2 * sin(1.7 * (double)(e + 7 * i)));
        if (petrel_program_set_input(p, i, &d) != PETREL_OK) n = -1;
    }
    if (n < 0 || petrel_program_execute(p) != PETREL_OK) n = -1;
    for (int o = 0; n >= 0 && o < petrel_program_num_outputs(p); o++) {
        petrel_tensor_desc t;
        petrel_value_kind kind;
        if (petrel_program_get_output(&t, p, o, &kind) != PETREL_OK) n = -1;
        for (int64_t e = 0; n >= 0 && e < petrel_tensor_numel(&t) && n < max; e++) out[n++] = petrel_tensor_get_f64(&t, e);
    }
    if (n < 0) snprintf(run_error, sizeof run_error, "%s", petrel_program_error(p));
    petrel_program_free(p);
    remove(out_path);
    return n;
}

static void test_norm_fold(void) {
    static const struct {
        norm_variant nv;
        const char *name;
        bool folds;
        int count; /* the outputs' elements */
    } vs[] = {{NV_LINEAR_N, "into linear_n", true, 48},
              {NV_GATED, "into gated_linear", true, 30},
              {NV_READ_TWICE, "read twice", false, 0},
              {NV_RESULT, "also a result", false, 0},
              {NV_OTHER_DTYPE, "changing dtype", false, 0},
              {NV_X_WRITTEN, "input written between", false, 0},
              {NV_NORM_ON, "linear normalizing already", false, 0},
              {NV_PLAIN_INPUT, "plain linear, input weight", false, 0},
              {NV_SLICED, "rows cut to the last one between", true, 16},
              {NV_SLICE_LAST, "last dim sliced between", false, 0},
              {NV_SLICED_ON, "rows cut, the linear normalizing already", false, 16},
              {NV_SLICED_X_WRITTEN, "rows cut, the input written before the cut", false, 16}};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        pt_graph g;
        pt_err err = {{0}};
        norm_graph(&g, vs[i].nv);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "norm fold, %s: the test graph is invalid: %s", vs[i].name,
              err.msg);
        double want[160], got[160];
        int nw = run_norm_graph(&g, want, 160), nodes = g.nnodes,
            on = vs[i].nv == NV_NORM_ON || vs[i].nv == NV_SLICED_ON;
        CHECK(nw > 0, "norm fold, %s: the unfolded graph failed: %s", vs[i].name, run_error);
        CHECK(pc_fuse(&g) == 0, "norm fold, %s: a fold counted as a fused op", vs[i].name);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "norm fold, %s: invalid after: %s", vs[i].name, err.msg);
        CHECK(count_op(&g, PETREL_OP_PETREL_RMS_NORM) == !vs[i].folds && norm_linears(&g) == vs[i].folds + on &&
                  g.nnodes == nodes - vs[i].folds,
              "norm fold, %s: %d norms left, %d linears normalize, want %d and %d", vs[i].name,
              count_op(&g, PETREL_OP_PETREL_RMS_NORM), norm_linears(&g), !vs[i].folds, vs[i].folds + on);
        if (vs[i].nv == NV_SLICED_ON) { /* the slice moved before the norm, which reads it */
            bool reads_slice = false;
            for (int32_t a = 0; a < g.nnodes; a++)
                if (g.nodes[a].op == PETREL_OP_PETREL_RMS_NORM)
                    for (int32_t b = 0; b < a; b++)
                        reads_slice |= g.nodes[b].op == PETREL_OP_SLICE &&
                                       g.nodes[b].outs[0] == g.nodes[a].args[0].items[0].vid;
            CHECK(reads_slice, "norm fold, %s: the norm does not read the slice", vs[i].name);
        }
        if (vs[i].count) { /* the same numbers, to the bit (NV_SLICED_ON: the norm reads the slice of x) */
            int ng = run_norm_graph(&g, got, 160);
            CHECK(nw == vs[i].count && ng == nw, "norm fold, %s: ran to %d and %d numbers (%s)", vs[i].name, nw, ng,
                  run_error);
            for (int e = 0; e < nw && e < ng; e++)
                CHECK(want[e] == got[e], "norm fold, %s: number %d is %g, was %g unfolded", vs[i].name, e, got[e],
                      want[e]);
        }
        pt_graph_free(&g);
    }
}

/* 7. Canonicalization (canon.c) on the core-ATen form: every
 * [view ->] mm/addmm(., permute(W)) [-> view] of a constant W becomes one
 * aten.linear (Whisper's with their biases, from addmm); with the
 * flattened x also read elsewhere the linear is the 2-D one and the
 * views stay; with the transposed weight also read elsewhere that linear
 * is left alone. */

/* Make a value a user output too. */
static bool expose(pt_graph *g, int32_t v) {
    pt_user_output *o = pt_realloc(g->outputs, (size_t)(g->noutputs + 1) * sizeof *o);
    if (!o) return false;
    g->outputs = o;
    g->outputs[g->noutputs++] = (pt_user_output){{v, 0, 0}, PT_V_TENSOR};
    return true;
}

/* Expose the first mm's (or addmm's) x operand when a view made it
 * (variant 1), or its transposed weight (variant 2). */
static bool expose_mm_operand(pt_graph *g, int variant) {
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        if (n->op != PETREL_OP_MM && n->op != PETREL_OP_ADDMM) continue;
        int base = n->op == PETREL_OP_ADDMM;
        int32_t v = n->args[base + (variant == 2)].items[0].vid;
        for (int32_t j = 0; j < i; j++)
            if (g->nodes[j].outs[0] == v)
                return (variant == 1 ? g->nodes[j].op == PETREL_OP_VIEW : true) && expose(g, v);
        return false;
    }
    return false;
}

static void test_canon(void) {
    static const struct {
        const char *fixture;
        int linears, addmm; /* mm/addmm in the graph, addmm of them */
    } fs[] = {{"llama_aten", 15, 0}, {"whisper_aten", 33, 26}, {"linear_bias_aten", 1, 1}};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        for (int variant = 0; variant < 3; variant++) { /* plain, x2d read elsewhere, weight^T read elsewhere */
            pt_mapping map;
            pz_archive z;
            pt_graph g;
            pt_err err = {{0}};
            if (!import(fs[i].fixture, &map, &z, &g)) {
                CHECK(0, "%s: import", fs[i].fixture);
                continue;
            }
            int views = count_op(&g, PETREL_OP_VIEW), left = variant == 2;
            CHECK(count_op(&g, PETREL_OP_MM) + count_op(&g, PETREL_OP_ADDMM) == fs[i].linears &&
                      count_op(&g, PETREL_OP_ADDMM) == fs[i].addmm,
                  "%s: %d mm and %d addmm imported", fs[i].fixture, count_op(&g, PETREL_OP_MM),
                  count_op(&g, PETREL_OP_ADDMM));
            /* the 2-D fixture has no flattening view to expose */
            if (variant && !expose_mm_operand(&g, variant)) goto next;
            int made = pc_canonicalize(&g);
            CHECK(made == fs[i].linears - left, "%s (variant %d): %d linears made, want %d", fs[i].fixture, variant,
                  made, fs[i].linears - left);
            CHECK(count_op(&g, PETREL_OP_LINEAR) == made &&
                      count_op(&g, PETREL_OP_MM) + count_op(&g, PETREL_OP_ADDMM) == left,
                  "%s (variant %d): %d linear, %d mm, %d addmm", fs[i].fixture, variant,
                  count_op(&g, PETREL_OP_LINEAR), count_op(&g, PETREL_OP_MM), count_op(&g, PETREL_OP_ADDMM));
            if (variant == 1 && !strcmp(fs[i].fixture, "llama_aten")) /* 3-D all */
                CHECK(count_op(&g, PETREL_OP_VIEW) == views - 2 * (made - 1),
                      "llama_aten: %d views left, want %d (the exposed one's two stay)", count_op(&g, PETREL_OP_VIEW),
                      views - 2 * (made - 1));
            if (variant == 2)
                CHECK(count_op(&g, PETREL_OP_PERMUTE) >= 1, "%s: the exposed transposed weight was removed",
                      fs[i].fixture);
            CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "%s (variant %d): %s", fs[i].fixture, variant, err.msg);
        next:
            pt_graph_free(&g);
            pz_close(&z);
            pt_unmap_file(&map);
        }
}

/* 8. Interleaved RoPE: fused with the flag, the decomposed ops gone; not
 * fused when an intermediate (the neg) is also a result. */
static void test_rope_interleaved(void) {
    static const char *fixtures[] = {"rope_interleaved_export", "rope_interleaved_aten",
                                     "rope_interleaved_partial_bf16_export", "rope_interleaved_partial_bf16_aten"};
    static const pt_op gone[] = {PETREL_OP_NEG, PETREL_OP_SLICE,      PETREL_OP_STACK,     PETREL_OP_FLATTEN,
                                 PETREL_OP_CAT, PETREL_OP_MUL_TENSOR, PETREL_OP_ADD_TENSOR};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
        for (int exposed = 0; exposed < 2; exposed++) {
            pt_mapping map;
            pz_archive z;
            pt_graph g;
            pt_err err = {{0}};
            if (!import(fixtures[i], &map, &z, &g)) {
                CHECK(0, "%s: import", fixtures[i]);
                continue;
            }
            CHECK(!exposed || expose_first(&g, PETREL_OP_NEG), "%s: no neg", fixtures[i]);
            int fused = pc_fuse(&g);
            pc_dce(&g);
            CHECK(fused == !exposed && count_op(&g, PETREL_OP_PETREL_ROPE) == !exposed, "%s%s: %d fused, %d rope",
                  fixtures[i], exposed ? " (neg exposed)" : "", fused, count_op(&g, PETREL_OP_PETREL_ROPE));
            for (int32_t n = 0; n < g.nnodes; n++)
                if (g.nodes[n].op == PETREL_OP_PETREL_ROPE)
                    CHECK(g.nodes[n].args[3].kind == PT_ARG_BOOL && g.nodes[n].args[3].items[0].i == 1,
                          "%s: the rope is not interleaved", fixtures[i]);
            for (size_t k = 0; k < sizeof gone / sizeof gone[0] && !exposed; k++)
                CHECK(count_op(&g, gone[k]) == 0, "%s: %d %s left", fixtures[i], count_op(&g, gone[k]),
                      pt_op_table[gone[k]].target);
            CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "%s: %s", fixtures[i], err.msg);
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
    test_rope_fold();
    test_qk_norm_fold();
    test_norm_fold();
    test_canon();
    test_rope_interleaved();
    test_out_of_memory("llama_aten");
    test_out_of_memory("llama_export");
    printf("test_fusion: %zu model and %zu op fixtures, %d failure%s\n", nc, no, failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
