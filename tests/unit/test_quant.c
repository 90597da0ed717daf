/*
** test_quant.c -- weight quantization, white-box.  1. The quantizer's
** formulas (core/quant.h, pt_quant_row) give exactly the codes, scales and
** zero points that torch computes independently from the same formulas
** (tests/fixtures/quant/reference.safetensors, written by
** tools/fixtures/make_quant_fixtures.py; moe_reference.safetensors for
** the MoE fixture's expert weights, compared with what the compiler
** stores for them): every format, group sizes 32, 64
** and 128, f32, bf16 and f16 weights, groups all positive, all negative,
** all zero, on rounding ties and below the scale floor.  2. The compiler
** pass (compiler/quant.c) on the LLM fixtures: the expected petrel.qlinear
** nodes for each scheme, no float copy of a quantized weight left, the
** program smaller by exactly what the quantization saves, --quant-skip
** (whole nodes and a split q/k/v), the MoE fixture's expert weights
** (E, N, K) as petrel.qexpert_linear, a tied embedding and LM head sharing one
** set of codes under --quant-embedding, scheme errors, and the bytes a call
** reads (the embedding table out of them unless the LM head reads it).  3. Out of memory at
** any allocation of the pass fails cleanly (ASan: no leak).  4. Every LLM
** fixture compiled with every scheme runs on the CPU with logits within a
** stated bound of the float program's (PETREL_QUANT_ERRORS=1 prints the
** measured distances).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compiler.h"
#include "core/quant.h"
#include "format/format.h"
#include "petrel.h"
#include "pt2/pt2.h"

static const char *out_path = "build-test-quant.petrel";
#include "check.h"
#include "graph_util.h"

/* ---- 1. formulas against torch ------------------------------------------------- */

static float elem_f32(const petrel_tensor_desc *t, int64_t i) { return (float)petrel_tensor_get_f64(t, i); }

/* One reference case "<fmt>/g<G>/<tag>/": quantize w row by row, compare. */
static void check_case(const petrel_tensor_file_t *f, const char *prefix) {
    char fmt[16], key[300];
    int G;
    if (sscanf(prefix, "%15[^/]/g%d/", fmt, &G) != 2) {
        CHECK(0, "bad case name '%s'", prefix);
        return;
    }
    pt_qfmt qf = (pt_qfmt)pt_qfmt_parse(fmt);
    petrel_tensor_desc w, q, s, zp;
    snprintf(key, sizeof key, "%sw", prefix);
    bool have = petrel_tensor_file_get(&w, f, key) == PETREL_OK;
    snprintf(key, sizeof key, "%sq", prefix);
    have = have && petrel_tensor_file_get(&q, f, key) == PETREL_OK;
    snprintf(key, sizeof key, "%ss", prefix);
    have = have && petrel_tensor_file_get(&s, f, key) == PETREL_OK;
    snprintf(key, sizeof key, "%szp", prefix);
    bool has_zp = petrel_tensor_file_get(&zp, f, key) == PETREL_OK;
    if (!have || (int)qf < 0 || w.rank != 2) {
        CHECK(0, "%s: incomplete case", prefix);
        return;
    }
    CHECK(has_zp == (!pt_qsym(qf)), "%s: zero points %s", prefix, has_zp ? "present" : "missing");
    int64_t N = w.shape[0], K = w.shape[1], groups = K / G;
    int bits = pt_qfmt_bits(qf), qmin = qf == PT_QFMT_NVFP4 ? 0 : pt_qfmt_qmin(qf);
    size_t ssz = petrel_dtype_size(s.dtype);
    float *row = malloc((size_t)K * sizeof *row);
    uint8_t *codes = malloc((size_t)(K * bits / 8)), *scales = malloc((size_t)groups * ssz);
    int8_t *zeros = malloc((size_t)groups);
    float t = 1.0f;
    if (qf == PT_QFMT_NVFP4) {
        float amax = 0;
        for (int64_t i = 0; i < N * K; i++) amax = fabsf(elem_f32(&w, i)) > amax ? fabsf(elem_f32(&w, i)) : amax;
        t = pt_nvfp4_tensor_scale(amax);
        float want = elem_f32(&zp, 0);
        CHECK(memcmp(&t, &want, 4) == 0, "%s: tensor scale %.9g, torch %.9g", prefix, t, want);
    }
    int bad = 0;
    for (int64_t r = 0; r < N && bad < 5; r++) {
        for (int64_t k = 0; k < K; k++) row[k] = elem_f32(&w, r * K + k);
        bool ok = pt_quant_row(qf, G, w.dtype, row, K, t, codes, scales, 0, has_zp && qf != PT_QFMT_NVFP4 ? zeros : NULL);
        CHECK(ok, "%s: row %lld not finite?", prefix, (long long)r);
        for (int64_t k = 0; k < K && bad < 5; k++) {
            int got = (int)pt_q_code(codes, k, bits) + qmin, want = (int)((const int8_t *)q.data)[r * K + k];
            if (got != want) {
                CHECK(0, "%s: row %lld element %lld: q %d, torch %d (w %.9g)", prefix, (long long)r, (long long)k, got,
                      want, row[k]);
                bad++;
            }
        }
        for (int64_t gi = 0; gi < groups && bad < 5; gi++) {
            const uint8_t *ws = (const uint8_t *)s.data + (r * groups + gi) * ssz;
            if (memcmp(scales + gi * ssz, ws, ssz) != 0) {
                CHECK(0, "%s: row %lld group %lld: scale differs from torch's", prefix, (long long)r, (long long)gi);
                bad++;
            }
            if (has_zp && qf != PT_QFMT_NVFP4 && zeros[gi] != ((const int8_t *)zp.data)[r * groups + gi]) {
                CHECK(0, "%s: row %lld group %lld: zero point %d, torch %d", prefix, (long long)r, (long long)gi,
                      zeros[gi], ((const int8_t *)zp.data)[r * groups + gi]);
                bad++;
            }
        }
    }
    free(row);
    free(codes);
    free(scales);
    free(zeros);
}

static void test_reference(void) {
    petrel_tensor_file_t *f = NULL;
    if (petrel_tensor_file_read(&f, "tests/fixtures/quant/reference.safetensors") != PETREL_OK) {
        CHECK(0, "reference: %s", petrel_last_error());
        return;
    }
    int cases = 0, seen[PT_QFMT_COUNT] = {0};
    for (int i = 0; i < petrel_tensor_file_count(f); i++) {
        const char *name = petrel_tensor_file_name(f, i);
        size_t len = strlen(name);
        if (len < 2 || strcmp(name + len - 2, "/w") != 0) continue;
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(len - 1), name);
        check_case(f, prefix);
        char fmt[16];
        if (sscanf(prefix, "%15[^/]", fmt) == 1 && pt_qfmt_parse(fmt) >= 0) seen[pt_qfmt_parse(fmt)]++;
        cases++;
    }
    for (int k = 0; k < PT_QFMT_COUNT; k++) CHECK(seen[k] > 0, "reference: no %s case", pt_qfmt_name(k));
    CHECK(cases >= 40, "reference: only %d cases", cases);
    petrel_tensor_file_free(f);
    /* E4M3 and E2M1 round trips over every code */
    for (int b = 0; b < 0x7f; b++) CHECK(pt_e4m3_bits(pt_e4m3_to_float((uint8_t)b)) == b, "e4m3 %#x", b);
    CHECK(pt_e4m3_bits(1e9f) == 0x7e && pt_e4m3_bits(0.0f) == 0, "e4m3 saturation / zero");
    for (int c = 0; c < 16; c++)
        CHECK(pt_e2m1_code(pt_e2m1_to_float((uint8_t)c)) == c || (c == 8 && pt_e2m1_code(-0.0f) == 8), "e2m1 %d", c);
}

/* ---- 2. the pass --------------------------------------------------------------- */

static int count_op(const pt_graph *g, pt_op op) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++) c += g->nodes[i].op == op;
    return c;
}

/* Compile fixture (a path) with `opts`; read the program into g (false
 * after a failed CHECK).  tg_release undoes it. */
static bool compile_read(const char *in, const petrel_compile_opts *opts, petrel_compile_report *r, pt_mapping *map,
                         pt_graph *g) {
    char why[600];
    bool ok = tg_compile_read(in, out_path, opts, r, map, g, why, sizeof why);
    CHECK(ok, "%s (%s): %s", in, opts && opts->quant ? opts->quant : "float", why);
    return ok;
}

/* The weights of a node the pass quantizes (a bias-free linear, a fused
 * linear, an MoE experts' product): their value ids, the count returned;
 * 0 for any other node. */
static int node_weights(const pt_node *n, int32_t *vids) {
    int nw = 0;
    switch (n->op) {
    case PETREL_OP_LINEAR: /* with a bias too (qlinear mode "bias" on the CPU) */
    case PETREL_OP_PETREL_LINEAR_ADD:
    case PETREL_OP_PETREL_EXPERT_LINEAR: vids[nw++] = n->args[1].items[0].vid; break;
    case PETREL_OP_PETREL_GATED_LINEAR:
        vids[nw++] = n->args[1].items[0].vid;
        vids[nw++] = n->args[2].items[0].vid;
        break;
    case PETREL_OP_PETREL_LINEAR_N:
        for (int k = 0; k < n->args[1].n && k < 12; k++) vids[nw++] = n->args[1].items[k].vid;
        break;
    default: break;
    }
    return nw;
}

/* K (the last dim) and the rows (all the others: an experts' weight
 * (E, N, K) has E * N) of weight v. */
static int64_t w_k(const pt_value *v) { return v->shape[v->rank - 1].lit; }
static int64_t w_rows(const pt_value *v) {
    int64_t r = 1;
    for (int d = 0; d < v->rank - 1; d++) r *= v->shape[d].lit;
    return r;
}

/* Weighted nodes in a float program whose weight K is a multiple of G:
 * (nodes fully quantizable, weights quantizable, weights in all). */
static void quantizable(const pt_graph *g, int G, int *nodes, int *weights, int *all) {
    *nodes = *weights = *all = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        int32_t vids[12];
        int nw = node_weights(n, vids), ok = 0;
        if (!nw) continue;
        for (int k = 0; k < nw; k++) ok += w_k(&g->values[vids[k]]) % G == 0;
        if (n->op == PETREL_OP_PETREL_GATED_LINEAR && ok == 1) ok = 0;
        *nodes += ok > 0;
        *weights += ok;
        *all += nw;
    }
}

/* Does node n apply the RMSNorm prologue (a norm fuse.c folded in)? */
static bool norm_on(const pt_node *n) {
    int a = n->op == PETREL_OP_PETREL_LINEAR_N ? 2 : n->op == PETREL_OP_PETREL_GATED_LINEAR ? 4
                                                     : n->op == PETREL_OP_PETREL_QLINEAR   ? 9
                                                                                           : -1;
    return a >= 0 && n->args[a].kind == PT_ARG_BOOL && n->args[a].items[0].i;
}

/* Nodes applying the prologue; with `op` >= 0 only those of that op. */
static int count_norm_on(const pt_graph *g, int op) {
    int c = 0;
    for (int32_t i = 0; i < g->nnodes; i++) c += norm_on(&g->nodes[i]) && (op < 0 || (int)g->nodes[i].op == op);
    return c;
}

/* Bytes of one quantized weight (N, K). */
static int64_t qbytes(int64_t N, int64_t K, pt_qfmt f, int G, size_t esize) {
    int64_t b = N * K * pt_qfmt_bits(f) / 8;
    if (f == PT_QFMT_NVFP4) return b + N * (K / 16) + 4;
    return b + N * (K / G) * (int64_t)esize + (pt_qsym(f) ? 0 : N * (K / G));
}

typedef struct scheme {
    const char *name;
    pt_qfmt f;
    int G;
} scheme;

static const scheme schemes[] = {
    {"int8", PT_QFMT_INT8, 32},  {"int8:sym", PT_QFMT_INT8S, 32}, {"int4", PT_QFMT_INT4, 32},
    {"int4:sym:gs=64", PT_QFMT_INT4S, 64}, {"int2:gs=64", PT_QFMT_INT2, 64}, {"int2:sym", PT_QFMT_INT2S, 32},
    {"int4:gs=128", PT_QFMT_INT4, 128}, {"nvfp4", PT_QFMT_NVFP4, 16},
};

/* The expected qlinear nodes and sizes for every scheme. */
static void test_schemes(const char *fixture) {
    char in[256];
    snprintf(in, sizeof in, "tests/fixtures/%s/model.pt2", fixture);
    petrel_compile_report rf, rq;
    pt_mapping map;
    pt_graph g;
    if (!compile_read(in, NULL, &rf, &map, &g)) return;
    int base_nodes = g.nnodes, norms = count_norm_on(&g, -1);
    int qn[8], qw[8], all = 0;
    for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++) quantizable(&g, schemes[s].G, &qn[s], &qw[s], &all);
    /* the expected bytes: every quantizable weight (shared ones once) */
    int64_t want_after[8] = {0}, want_before[8] = {0}, want_kept[8] = {0};
    for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++) {
        bool *seen = calloc((size_t)g.nvalues, 1);
        for (int32_t i = 0; i < g.nnodes; i++) {
            const pt_node *n = &g.nodes[i];
            int32_t vids[12];
            int nw = node_weights(n, vids), ok = 0;
            for (int k = 0; k < nw; k++) ok += w_k(&g.values[vids[k]]) % schemes[s].G == 0;
            for (int k = 0; k < nw; k++) {
                int32_t v = vids[k];
                const pt_value *w = &g.values[v];
                if (seen[v] || w_k(w) % schemes[s].G || (n->op == PETREL_OP_PETREL_GATED_LINEAR && ok < 2))
                    continue;
                seen[v] = true;
                size_t es = petrel_dtype_size(w->dtype);
                want_before[s] += w_rows(w) * w_k(w) * (int64_t)es;
                want_after[s] += qbytes(w_rows(w), w_k(w), schemes[s].f, schemes[s].G, es);
                /* a tied weight the (float) embedding still reads stays too */
                for (int32_t j = 0; j < g.nnodes; j++)
                    if (g.nodes[j].op == PETREL_OP_EMBEDDING && g.nodes[j].args[0].items[0].vid == v)
                        want_kept[s] += w_rows(w) * w_k(w) * (int64_t)es;
            }
        }
        free(seen);
    }
    tg_release(out_path, &map, &g);
    CHECK(qw[2] == all && all > 0, "%s: %d of %d linear weights quantizable at group 32", fixture, qw[2], all);
    for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++) {
        petrel_compile_opts o = {.quant = schemes[s].name};
        if (!compile_read(in, &o, &rq, &map, &g)) continue;
        const char *sn = schemes[s].name;
        int nq = count_op(&g, PETREL_OP_PETREL_QLINEAR) + count_op(&g, PETREL_OP_PETREL_QEXPERT_LINEAR);
        CHECK(nq == qn[s], "%s %s: %d qlinear and qexpert_linear, want %d", fixture, sn, nq, qn[s]);
        CHECK(rq.quant_kept == all - qw[s], "%s %s: %d kept float, want %d (%s)", fixture, sn, rq.quant_kept,
              all - qw[s], rq.quant_kept_why);
        CHECK(rq.quant_bytes_before == want_before[s] && rq.quant_bytes_after == want_after[s],
              "%s %s: %lld -> %lld bytes, want %lld -> %lld", fixture, sn, (long long)rq.quant_bytes_before,
              (long long)rq.quant_bytes_after, (long long)want_before[s], (long long)want_after[s]);
        /* the float bytes are gone: the program shrank by exactly the saving */
        int64_t saving = want_before[s] - want_kept[s] - want_after[s];
        CHECK(rf.weight_bytes - rq.weight_bytes == saving, "%s %s: weights %lld -> %lld bytes, want a saving of %lld",
              fixture, sn, (long long)rf.weight_bytes, (long long)rq.weight_bytes, (long long)saving);
        CHECK(!qw[s] || rq.file_bytes < rf.file_bytes, "%s %s: file %lld bytes, float %lld", fixture, sn,
              (long long)rq.file_bytes, (long long)rf.file_bytes);
        CHECK(g.nnodes == base_nodes, "%s %s: %d nodes, float %d", fixture, sn, g.nnodes, base_nodes);
        /* the folded norms go along with their linears into the qlinears */
        CHECK(count_norm_on(&g, -1) == norms &&
                  (qw[s] < all || count_norm_on(&g, PETREL_OP_PETREL_QLINEAR) == norms),
              "%s %s: %d nodes (%d qlinear) apply a norm, float %d", fixture, sn, count_norm_on(&g, -1),
              count_norm_on(&g, PETREL_OP_PETREL_QLINEAR), norms);
        /* every qlinear: format and group size as asked, zeros as the format wants */
        for (int32_t i = 0; i < g.nnodes; i++) {
            const pt_node *n = &g.nodes[i];
            if (n->op != PETREL_OP_PETREL_QLINEAR) continue;
            int nw = n->args[1].n, nz = schemes[s].f == PT_QFMT_NVFP4 || !pt_qsym(schemes[s].f) ? nw : 0;
            CHECK(!strcmp(n->args[5].str, pt_qfmt_name(schemes[s].f)) && n->args[6].items[0].i == schemes[s].G &&
                      n->args[2].n == nw && n->args[3].n == nz,
                  "%s %s: qlinear '%s': format %s g%lld, %d scales, %d zeros", fixture, sn, n->name, n->args[5].str,
                  (long long)n->args[6].items[0].i, n->args[2].n, n->args[3].n);
        }
        /* every qexpert_linear likewise, its codes (E, N, K * bits / 8) */
        for (int32_t i = 0; i < g.nnodes; i++) {
            const pt_node *n = &g.nodes[i];
            if (n->op != PETREL_OP_PETREL_QEXPERT_LINEAR) continue;
            const pt_value *x = &g.values[n->args[0].items[0].vid], *c = &g.values[n->args[2].items[0].vid];
            int nz = schemes[s].f == PT_QFMT_NVFP4 || !pt_qsym(schemes[s].f);
            CHECK(!strcmp(n->args[5].str, pt_qfmt_name(schemes[s].f)) && n->args[6].items[0].i == schemes[s].G &&
                      n->args[4].n == nz && c->rank == 3 &&
                      c->shape[2].lit == x->shape[1].lit * pt_qfmt_bits(schemes[s].f) / 8,
                  "%s %s: qexpert_linear '%s': format %s g%lld, %d zeros, codes rank %d", fixture, sn, n->name,
                  n->args[5].str, (long long)n->args[6].items[0].i, n->args[4].n, c->rank);
        }
        tg_release(out_path, &map, &g);
    }
}

/* Linears with a bias (Whisper's q, v, out_proj, fc1, fc2: 5 of its 7
 * linears per layer, 4 layers and the head; 33 linear weights in all):
 * qlinear mode "bias" for either backend; kept float, and reported, for
 * a backend whose kernels take no bias (the pass's opts.bias false). */
static void count_bias(const pt_graph *g, int *nbias, int *nfloat) {
    *nbias = *nfloat = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        *nbias += n->op == PETREL_OP_PETREL_QLINEAR && !strcmp(n->args[7].str, "bias") &&
                  n->args[4].kind == PT_ARG_TENSOR && g->values[n->args[4].items[0].vid].rank == 1;
        *nfloat += n->op == PETREL_OP_LINEAR && n->args[2].kind == PT_ARG_TENSOR;
    }
}

static bool import_raw(const char *in, pt_mapping *map, pz_archive *z, pt_graph *g);
static bool import(const char *in, pt_mapping *map, pz_archive *z, pt_graph *g);

static void test_bias(void) {
    const char *in = "tests/fixtures/whisper_export/model.pt2";
    for (int cuda = 0; cuda < 2; cuda++) {
        petrel_compile_opts o = {.quant = "int8", .backend = cuda ? "cuda" : NULL};
        petrel_compile_report r;
        pt_mapping map;
        pt_graph g;
        if (!compile_read(in, &o, &r, &map, &g)) continue;
        int nbias, nfloat;
        count_bias(&g, &nbias, &nfloat);
        CHECK(nbias == 26 && nfloat == 0 && r.quantized == 33 && r.quant_kept == 0,
              "whisper int8 for %s: %d qlinear mode bias, %d float linears with a bias, %d quantized, %d kept (%s)",
              cuda ? "cuda" : "the cpu", nbias, nfloat, r.quantized, r.quant_kept, r.quant_kept_why);
        tg_release(out_path, &map, &g);
    }
    pc_quant_opts o = {.bias = false};
    pt_err err = {{0}};
    pt_mapping map;
    pz_archive z;
    pt_graph g;
    pc_quant_result r;
    CHECK(pc_quant_parse("int8", &o, &err) == PETREL_OK, "parse: %s", err.msg);
    if (!import(in, &map, &z, &g)) return;
    CHECK(pc_quantize(&g, &o, &r, &err) == PETREL_OK, "quantize: %s", err.msg);
    int nbias, nfloat;
    count_bias(&g, &nbias, &nfloat);
    CHECK(nbias == 0 && nfloat == 26 && r.quantized == 7 && r.kept == 26 &&
              strstr(r.kept_why, "linear with a bias: the backend has no quantized kernel for it"),
          "whisper int8, no bias kernel: %d qlinear mode bias, %d float linears with a bias, %d quantized, %d kept (%s)",
          nbias, nfloat, r.quantized, r.kept, r.kept_why);
    pt_graph_free(&g);
    pc_quant_free(&r);
    pz_close(&z);
    pt_unmap_file(&map);
}

/* Name patterns: whole nodes and one weight of q/k/v kept float. */
static void test_skip(void) {
    const char *in = "tests/fixtures/llama_export/model.pt2";
    const char *mlp[] = {"*.mlp.*"}, *kproj[] = {"*k_proj*", "*.layers.1.*"};
    petrel_compile_report r;
    pt_mapping map;
    pt_graph g;
    petrel_compile_opts o = {.quant = "int4", .quant_skip = mlp, .n_quant_skip = 1};
    if (compile_read(in, &o, &r, &map, &g)) {
        /* per layer q/k/v and o stay quantized; gate/up (gated) and down (add) float; the head */
        CHECK(count_op(&g, PETREL_OP_PETREL_QLINEAR) == 2 * 2 + 1 && r.quant_kept == 2 * 3 &&
                  count_op(&g, PETREL_OP_PETREL_GATED_LINEAR) == 2,
              "skip *.mlp.*: %d qlinear, %d kept (%s)", count_op(&g, PETREL_OP_PETREL_QLINEAR), r.quant_kept,
              r.quant_kept_why);
        tg_release(out_path, &map, &g);
    }
    o.quant_skip = kproj;
    o.n_quant_skip = 2;
    if (compile_read(in, &o, &r, &map, &g)) {
        /* layer 0: q/v quantized with k split off into a float linear_n, o, gate/up,
         * down; layer 1 all float; the head */
        int split = 0;
        for (int32_t i = 0; i < g.nnodes; i++)
            if (g.nodes[i].op == PETREL_OP_PETREL_QLINEAR && g.nodes[i].args[1].n == 2 && i + 1 < g.nnodes &&
                g.nodes[i + 1].op == PETREL_OP_PETREL_LINEAR_N && g.nodes[i + 1].args[1].n == 1 &&
                g.nodes[i].nout == 2 && g.nodes[i + 1].nout == 1 && norm_on(&g.nodes[i]) && norm_on(&g.nodes[i + 1]))
                split++; /* both halves normalize x themselves */
        CHECK(split == 1 && count_op(&g, PETREL_OP_PETREL_QLINEAR) == 4 + 1 && r.quant_kept == 1 + 7,
              "skip k_proj + layer 1: %d split, %d qlinear, %d kept (%s)", split,
              count_op(&g, PETREL_OP_PETREL_QLINEAR), r.quant_kept, r.quant_kept_why);
        tg_release(out_path, &map, &g);
    }
}

/* The value read by argument a (item k) of the first node with op. */
static int32_t first_arg(const pt_graph *g, pt_op op, int a, int k) {
    for (int32_t i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == op && g->nodes[i].args[a].n > k) return g->nodes[i].args[a].items[k].vid;
    return -1;
}

/* The qlinear whose output is a graph output (the LM head): its codes. */
static int32_t head_codes(const pt_graph *g) {
    for (int32_t i = g->nnodes - 1; i >= 0; i--)
        if (g->nodes[i].op == PETREL_OP_PETREL_QLINEAR && g->nodes[i].args[1].n == 1) return g->nodes[i].args[1].items[0].vid;
    return -1;
}

/* The value whose fqn is `fqn`, or NULL. */
static const pt_value *value_named(const pt_graph *g, const char *fqn) {
    for (int32_t i = 0; i < g->nvalues; i++)
        if (g->values[i].fqn && !strcmp(g->values[i].fqn, fqn)) return &g->values[i];
    return NULL;
}

/* The MoE fixture's expert weights as `petrel compile --quant` stores them
 * (petrel.qexpert_linear's (E, N, ...) codes, scales and zeros) against
 * tests/fixtures/quant/moe_reference.safetensors: torch's quantization
 * of the same weights as E * N rows (make_quant_fixtures.py), bit for bit. */
static void test_moe_reference(void) {
    petrel_tensor_file_t *f = NULL;
    if (petrel_tensor_file_read(&f, "tests/fixtures/quant/moe_reference.safetensors") != PETREL_OK) {
        CHECK(0, "moe reference: %s", petrel_last_error());
        return;
    }
    static const struct {
        const char *scheme, *tag;
    } moe_schemes[] = {{"int4", "int4"}, {"int8:sym", "int8s"}, {"int2", "int2"}, {"nvfp4", "nvfp4"}};
    static const char *weights[] = {"model.model.layers.0.mlp.experts.gate_up_proj",
                                    "model.model.layers.0.mlp.experts.down_proj",
                                    "model.model.layers.1.mlp.experts.gate_up_proj",
                                    "model.model.layers.1.mlp.experts.down_proj"};
    int compared = 0;
    for (size_t si = 0; si < sizeof moe_schemes / sizeof moe_schemes[0]; si++) {
        petrel_compile_opts o = {.quant = moe_schemes[si].scheme};
        petrel_compile_report r;
        pt_mapping map;
        pt_graph g;
        if (!compile_read("tests/fixtures/qwen3_moe_export/model.pt2", &o, &r, &map, &g)) continue;
        pt_qfmt qf = (pt_qfmt)pt_qfmt_parse(moe_schemes[si].tag);
        int bits = pt_qfmt_bits(qf), qmin = qf == PT_QFMT_NVFP4 ? 0 : pt_qfmt_qmin(qf);
        for (size_t wi = 0; wi < sizeof weights / sizeof weights[0]; wi++) {
            char key[320], name[320];
            petrel_tensor_desc q, s, zp;
            snprintf(key, sizeof key, "%s/%s/q", weights[wi], moe_schemes[si].tag);
            bool have = petrel_tensor_file_get(&q, f, key) == PETREL_OK;
            snprintf(key, sizeof key, "%s/%s/s", weights[wi], moe_schemes[si].tag);
            have = have && petrel_tensor_file_get(&s, f, key) == PETREL_OK;
            snprintf(key, sizeof key, "%s/%s/zp", weights[wi], moe_schemes[si].tag);
            bool has_zp = petrel_tensor_file_get(&zp, f, key) == PETREL_OK;
            snprintf(name, sizeof name, "%s.qcodes", weights[wi]);
            const pt_value *cv = value_named(&g, name);
            snprintf(name, sizeof name, "%s.qscales", weights[wi]);
            const pt_value *sv = value_named(&g, name);
            snprintf(name, sizeof name, "%s.qzeros", weights[wi]);
            const pt_value *zv = value_named(&g, name);
            if (!have || !cv || !sv || cv->rank != 3 || (has_zp && !zv)) {
                CHECK(0, "%s %s: reference or quantized tensors missing", weights[wi], moe_schemes[si].scheme);
                continue;
            }
            int64_t rows = q.shape[0], K = q.shape[1], E = cv->shape[0].lit, N = cv->shape[1].lit;
            int64_t cols = cv->shape[2].lit, groups = s.shape[s.rank - 1];
            CHECK(E * N == rows && cols == K * bits / 8, "%s %s: codes (%lld, %lld, %lld) for %lld rows of %lld",
                  weights[wi], moe_schemes[si].scheme, (long long)E, (long long)N, (long long)cols, (long long)rows,
                  (long long)K);
            if (E * N != rows || cols != K * bits / 8) continue;
            int bad = 0;
            for (int64_t r0 = 0; r0 < rows; r0++)
                for (int64_t k = 0; k < K; k++)
                    bad += (int)pt_q_code(cv->data + r0 * cols, k, bits) + qmin != ((const int8_t *)q.data)[r0 * K + k];
            size_t ssz = petrel_dtype_size(s.dtype);
            bad += sv->data_bytes != rows * groups * (int64_t)ssz ||
                   memcmp(sv->data, s.data, (size_t)(rows * groups) * ssz) != 0;
            if (has_zp) { /* i8 zero points, or nvfp4's f32 tensor scale */
                int64_t zn = 1;
                for (int d = 0; d < zp.rank; d++) zn *= zp.shape[d];
                int64_t zb = zn * (int64_t)petrel_dtype_size(zp.dtype);
                bad += zv->data_bytes != zb || memcmp(zv->data, zp.data, (size_t)zb) != 0;
            }
            CHECK(bad == 0, "%s %s: %d codes, scales or zero points differ from torch's", weights[wi],
                  moe_schemes[si].scheme, bad);
            compared++;
        }
        tg_release(out_path, &map, &g);
    }
    CHECK(compared == 16, "moe reference: %d of 16 weights compared", compared);
    petrel_tensor_file_free(f);
}

/* Tied embedding and LM head (one weight value in the export). */
static void test_tied(const char *in, const char *emb) {
    petrel_compile_report r;
    pt_mapping map;
    pt_graph g;
    char codes[256];
    snprintf(codes, sizeof codes, "%s.qcodes", emb);
    petrel_compile_opts o = {.quant = "int4"};
    if (compile_read(in, &o, &r, &map, &g)) {
        /* the embedding keeps the float weight, the head reads a quantized copy */
        int32_t ew = first_arg(&g, PETREL_OP_EMBEDDING, 0, 0), hc = head_codes(&g);
        CHECK(ew >= 0 && g.values[ew].fqn && !strcmp(g.values[ew].fqn, emb) && hc >= 0 &&
                  !strcmp(g.values[hc].fqn, codes) && count_op(&g, PETREL_OP_PETREL_QEMBEDDING) == 0,
              "%s: tied, no --quant-embedding: embedding reads %s, head codes %s", in,
              ew >= 0 ? g.values[ew].fqn : "?", hc >= 0 ? g.values[hc].fqn : "?");
        tg_release(out_path, &map, &g);
    }
    o.quant_embedding = true;
    if (compile_read(in, &o, &r, &map, &g)) {
        int32_t ec = first_arg(&g, PETREL_OP_PETREL_QEMBEDDING, 0, 0), hc = head_codes(&g);
        int32_t es = first_arg(&g, PETREL_OP_PETREL_QEMBEDDING, 1, 0);
        CHECK(ec >= 0 && ec == hc && count_op(&g, PETREL_OP_EMBEDDING) == 0 && !value_named(&g, emb) && es >= 0,
              "%s: tied under --quant-embedding: embedding codes %d, head codes %d, float weight %s", in, ec, hc,
              value_named(&g, emb) ? "left" : "gone");
        /* the shared codes count once */
        int nq = 0;
        petrel_program_t *p = NULL;
        petrel_load_opts lo = {.inspect_only = true};
        petrel_quant_info qi;
        if (petrel_program_load(&p, out_path, &lo) == PETREL_OK) {
            bool tied = false;
            for (; petrel_program_quant_weight(&qi, p, nq) == PETREL_OK; nq++)
                if (!strcmp(qi.name, emb)) tied = qi.readers == 2 && !strcmp(qi.format, "int4") && qi.group_size == 32;
            CHECK(nq == r.quantized && tied, "%s: inspect lists %d quantized weights (report %d), tied %d", in, nq,
                  r.quantized, tied);
            petrel_program_free(p);
        }
        tg_release(out_path, &map, &g);
    }
}

static void test_bad_schemes(void) {
    static const char *bad[] = {"int5", "int4:gs=48", "int4:asym", "nvfp4:sym", "int4:sym:sym", "int4:", "",
                                "int4:gs=", "INT4", "int4:gs=64:gs=32"};
    petrel_compile_report r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        petrel_compile_opts o = {.quant = bad[i]};
        petrel_status st = petrel_compile(&r, "tests/fixtures/llama_export/model.pt2", out_path, &o);
        CHECK(st == PETREL_ERR_INVALID_ARG && strstr(petrel_last_error(), "quantization scheme"),
              "scheme '%s': %s (%s)", bad[i], petrel_status_str(st), petrel_last_error());
        FILE *f = fopen(out_path, "rb");
        CHECK(!f, "scheme '%s': a program was written", bad[i]);
        if (f) fclose(f), remove(out_path);
    }
}

/* ---- 4. end to end ------------------------------------------------------------- */

/* Relative L2 distance of two float tensors of the same shape. */
static double rel_l2(const petrel_tensor_desc *a, const petrel_tensor_desc *b) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < petrel_tensor_numel(b); i++) {
        double x = petrel_tensor_get_f64(a, i), y = petrel_tensor_get_f64(b, i);
        num += (x - y) * (x - y);
        den += y * y;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Each step of fixture's calls on the float and the quantized program
 * (both run on the CPU): the largest relative L2 distance of the logits,
 * or -1 on failure. */
static double logits_error(const char *fixture, const char *fpath, const char *qpath) {
    petrel_program_t *fp = NULL, *qp = NULL;
    double worst = -1;
    const petrel_load_opts lo = {.backend = "cpu"};
    if (petrel_program_load(&fp, fpath, &lo) != PETREL_OK || petrel_program_load(&qp, qpath, &lo) != PETREL_OK) {
        CHECK(0, "%s: load: %s", fixture, petrel_last_error());
        goto done;
    }
    for (int k = 0;; k++) {
        char in[256];
        snprintf(in, sizeof in, "tests/fixtures/%s/step%d.in.safetensors", fixture, k);
        petrel_tensor_file_t *f = NULL;
        if (petrel_tensor_file_read(&f, in) != PETREL_OK) break;
        petrel_tensor_desc a, b;
        bool ok = petrel_program_set_inputs_from_file(fp, f) == PETREL_OK &&
                  petrel_program_set_inputs_from_file(qp, f) == PETREL_OK && petrel_program_execute(fp) == PETREL_OK &&
                  petrel_program_execute(qp) == PETREL_OK && petrel_program_get_output(&a, fp, 0, NULL) == PETREL_OK &&
                  petrel_program_get_output(&b, qp, 0, NULL) == PETREL_OK;
        petrel_tensor_file_free(f);
        if (!ok) {
            CHECK(0, "%s step %d: %s / %s", fixture, k, petrel_program_error(fp), petrel_program_error(qp));
            worst = -1;
            break;
        }
        double e = rel_l2(&b, &a);
        worst = e > worst ? e : worst;
    }
done:
    petrel_program_free(fp);
    petrel_program_free(qp);
    return worst;
}

/* Bounds on the logits' relative L2 distance from the float program's,
 * per scheme, with and without --quant-embedding (all four calls of each
 * fixture: prefill and three decode steps).  Why these numbers: for the
 * fixtures' Gaussian weights a group of 32 spans about 4 sigma, so the
 * rounding step is 4 sigma / (2^bits - 1) and the rounding noise (step /
 * sqrt 12) is about 0.0045 sigma for int8, 0.077 for int4 and 0.38 for
 * int2 (symmetric formats and a clipped side a little more); nvfp4's
 * E2M1 grid gives about 0.1.  The noise of the 7 quantized linears per
 * layer and the LM head adds up through 2 layers and the norms, which
 * amplify it 1.3x to 4x in the measurements (Gemma 3's scaled embedding
 * and four norms per layer the most):
 *
 *   scheme   measured max (fixture)       bound
 *   int8     0.017 (gemma3, embedding)    0.03
 *   int4     0.38  (gemma3, sym, emb.)    0.5
 *   nvfp4    0.33  (gemma3, embedding)    0.5
 *   int2     1.36  (gemma3, sym)          1.6   (int2 keeps little of a
 *                                                 random model's signal)
 *
 * And per fixture the errors grow int8 < int4 < int2: a kernel reading the
 * codes wrongly gives int8 an int2-sized error. */
static void test_end_to_end(void) {
    static const char *fixtures[] = {"llama_export", "llama_bf16_export", "qwen3_export", "gemma3_export",
                                     "phi3_export", "qwen3_moe_export", "whisper_export"};
    static const struct {
        const char *scheme;
        double bound;
    } sch[] = {{"int8", 0.03}, {"int8:sym", 0.03}, {"int4", 0.5}, {"int4:sym", 0.5},
               {"int2", 1.6},  {"int2:sym", 1.6},  {"nvfp4", 0.5}};
    const char *fpath = "build-test-quant-float.petrel";
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char in[256];
        snprintf(in, sizeof in, "tests/fixtures/%s/model.pt2", fixtures[i]);
        petrel_compile_report r;
        if (petrel_compile(&r, in, fpath, NULL) != PETREL_OK) {
            CHECK(0, "%s: compile: %s", fixtures[i], petrel_last_error());
            continue;
        }
        double err[sizeof sch / sizeof sch[0]][2];
        for (size_t s = 0; s < sizeof sch / sizeof sch[0]; s++) {
            for (int emb = 0; emb < 2; emb++) {
                petrel_compile_opts o = {.quant = sch[s].scheme, .quant_embedding = emb};
                err[s][emb] = -1;
                if (petrel_compile(&r, in, out_path, &o) != PETREL_OK) {
                    CHECK(0, "%s %s: compile: %s", fixtures[i], sch[s].scheme, petrel_last_error());
                    continue;
                }
                err[s][emb] = logits_error(fixtures[i], fpath, out_path);
                CHECK(err[s][emb] >= 0 && err[s][emb] <= sch[s].bound, "%s %s%s: logits %.4f from float's, bound %g",
                      fixtures[i], sch[s].scheme, emb ? " --quant-embedding" : "", err[s][emb], sch[s].bound);
                if (getenv("PETREL_QUANT_ERRORS"))
                    printf("%-18s %-9s %-5s %.4f\n", fixtures[i], sch[s].scheme, emb ? "emb" : "", err[s][emb]);
                remove(out_path);
            }
        }
        CHECK(err[0][0] < err[2][0] && err[2][0] < err[4][0], "%s: int8 %.4f, int4 %.4f, int2 %.4f do not grow",
              fixtures[i], err[0][0], err[2][0], err[4][0]);
        remove(fpath);
    }
}

/* petrel.qkv_attn: compiled for cuda, each layer's quantized q/k/v and
 * its attention become one node (none for the CPU, none unquantized), and
 * the CPU runs it as the two ops: every fixture step's logits equal the
 * unfused program's bit for bit. */
static void test_qkv_attn(void) {
    static const char *fixtures[] = {"llama_export", "llama_bf16_export", "qwen3_export", "gemma3_export",
                                     "qwen3_moe_export"};
    static const char *qs[] = {"int4", "int8:sym", NULL};
    const char *cpath = "build-test-quant-cpu.petrel";
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char in[256];
        snprintf(in, sizeof in, "tests/fixtures/%s/model.pt2", fixtures[i]);
        for (int s = 0; s < 3; s++) {
            petrel_compile_opts oc = {.quant = qs[s]}, og = {.quant = qs[s], .backend = "cuda"};
            petrel_compile_report r;
            pt_mapping map;
            pt_graph g;
            if (!compile_read(in, &oc, &r, &map, &g)) continue;
            CHECK(count_op(&g, PETREL_OP_PETREL_QKV_ATTN) == 0, "%s %s for the cpu: qkv_attn made", fixtures[i],
                  qs[s] ? qs[s] : "float");
            tg_release(out_path, &map, &g);
            if (petrel_compile(&r, in, cpath, &oc) != PETREL_OK) {
                CHECK(0, "%s: compile: %s", fixtures[i], petrel_last_error());
                continue;
            }
            if (!compile_read(in, &og, &r, &map, &g)) continue;
            int nf = count_op(&g, PETREL_OP_PETREL_QKV_ATTN), na = count_op(&g, PETREL_OP_PETREL_SDPA_CACHE);
            pt_graph_free(&g); /* the program file stays: it is run below */
            pt_unmap_file(&map);
            int want = qs[s] ? 2 : 0;
            CHECK(nf == want && na == 2 - want, "%s %s for cuda: %d qkv_attn, %d sdpa_cache (want %d, %d)",
                  fixtures[i], qs[s] ? qs[s] : "float", nf, na, want, 2 - want);
            double e = logits_error(fixtures[i], cpath, out_path);
            CHECK(e == 0.0, "%s %s: the fused program's logits differ on the cpu (relative L2 %g)", fixtures[i],
                  qs[s] ? qs[s] : "float", e);
            remove(out_path);
            remove(cpath);
        }
    }
}

/* The pass's limits on the quantized Llama fixture (two layers): as
 * compiled both layers fuse; with layer 0's q projection or its v heads'
 * view also a graph result only layer 1 does; with layer 0's k and v
 * projections made in the other order (results and weights swapped
 * together: the same program) both fuse, the fused node's weights in q,
 * k, v order.  The graph stays valid each time. */
static void qkv_add_result(pt_graph *g, int32_t vid) {
    pt_user_output *o = pt_realloc(g->outputs, (size_t)(g->noutputs + 1) * sizeof *o);
    if (!o) abort();
    g->outputs = o;
    g->outputs[g->noutputs++] = (pt_user_output){.item = {.vid = vid}, .kind = PT_V_TENSOR};
}

static void test_qkv_attn_limits(void) {
    const char *in = "tests/fixtures/llama_export/model.pt2";
    static const char *names[] = {"as compiled", "q also a result", "v's heads also a result", "k and v swapped"};
    static const int want[] = {2, 1, 1, 2};
    for (int v = 0; v < 4; v++) {
        pc_quant_opts o = {0};
        pt_err err = {{0}};
        pt_mapping map;
        pz_archive z;
        pt_graph g;
        pc_quant_result r;
        CHECK(pc_quant_parse("int4", &o, &err) == PETREL_OK, "parse: %s", err.msg);
        if (!import_raw(in, &map, &z, &g)) return;
        tg_passes(&g); /* petrel_compile's before quantization (its constant folding aside) */
        CHECK(pc_quantize(&g, &o, &r, &err) == PETREL_OK, "quantize: %s", err.msg);
        pt_node *ql = NULL; /* layer 0's q/k/v */
        for (int32_t i = 0; i < g.nnodes && !ql; i++)
            if (g.nodes[i].op == PETREL_OP_PETREL_QLINEAR && g.nodes[i].nout == 3) ql = &g.nodes[i];
        CHECK(ql != NULL, "qkv_attn limits: no q/k/v qlinear");
        if (!ql) goto next;
        int32_t kcodes = ql->args[1].items[1].vid, vcodes = ql->args[1].items[2].vid;
        if (v == 1) qkv_add_result(&g, ql->outs[0]);
        if (v == 2) /* the transpose reading v's view */
            for (int32_t i = 0; i < g.nnodes; i++)
                for (int32_t j = 0; j < g.nnodes; j++)
                    if (g.nodes[i].op == PETREL_OP_VIEW && g.nodes[i].args[0].items &&
                        g.nodes[i].args[0].items[0].vid == ql->outs[2] && g.nodes[j].op == PETREL_OP_TRANSPOSE &&
                        g.nodes[j].args[0].items[0].vid == g.nodes[i].outs[0])
                        qkv_add_result(&g, g.nodes[j].outs[0]);
        if (v == 3) {
            int32_t t = ql->outs[1];
            ql->outs[1] = ql->outs[2], ql->outs[2] = t;
            for (int a = 1; a <= 3; a++) {
                pt_item it = ql->args[a].items[1];
                ql->args[a].items[1] = ql->args[a].items[2], ql->args[a].items[2] = it;
            }
        }
        int made = pc_fuse_qkv_attn(&g);
        CHECK(made == want[v], "qkv_attn limits, %s: %d fused (want %d)", names[v], made, want[v]);
        CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "qkv_attn limits, %s: invalid after: %s", names[v], err.msg);
        for (int32_t i = 0; i < g.nnodes && v == 3; i++)
            if (g.nodes[i].op == PETREL_OP_PETREL_QKV_ATTN) {
                CHECK(g.nodes[i].args[1].items[1].vid == kcodes && g.nodes[i].args[1].items[2].vid == vcodes,
                      "qkv_attn limits, k and v swapped: the fused node's weights are not in q, k, v order");
                break;
            }
    next:
        pt_graph_free(&g);
        pc_quant_free(&r);
        pz_close(&z);
        pt_unmap_file(&map);
    }
}

/* The weight bytes a call reads whole (petrel_program_stats'
 * step_weight_bytes): all of the program's weights but the tables only
 * embedding lookups read.  The LLM fixtures' table is (256, 32) f32:
 * 32768 bytes; int8 codes of it with one group per row: 8192 + 256 f32
 * scales + 256 i8 zero points = 9472. */
static void test_step_bytes(void) {
    static const struct {
        const char *fixture, *scheme;
        bool embedding;
        int64_t table; /* weight_bytes - step_weight_bytes */
    } cases[] = {
        {"llama_export", NULL, false, 32768},  /* untied: the table is read by the lookup only */
        {"llama_export", "int8", false, 32768},
        {"llama_export", "int8", true, 9472},  /* its codes, scales and zero points */
        {"gemma3_export", NULL, false, 0},     /* tied: the LM head reads the table whole */
        {"gemma3_export", "int8", false, 32768}, /* the head quantized, the table kept for the lookup */
        {"gemma3_export", "int8", true, 0},    /* one set of codes for both */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char in[256];
        snprintf(in, sizeof in, "tests/fixtures/%s/model.pt2", cases[i].fixture);
        petrel_compile_opts o = {.quant = cases[i].scheme, .quant_embedding = cases[i].embedding};
        petrel_compile_report r;
        petrel_program_t *p = NULL;
        petrel_program_stats st;
        if (petrel_compile(&r, in, out_path, &o) != PETREL_OK || petrel_program_load(&p, out_path, NULL) != PETREL_OK ||
            petrel_program_get_stats(&st, p) != PETREL_OK) {
            CHECK(0, "%s %s: %s", cases[i].fixture, cases[i].scheme ? cases[i].scheme : "float", petrel_last_error());
        } else {
            CHECK(st.weight_bytes - st.step_weight_bytes == cases[i].table && st.step_weight_bytes > 0,
                  "%s %s%s: %lld weight bytes, %lld read by a call, want %lld fewer", cases[i].fixture,
                  cases[i].scheme ? cases[i].scheme : "float", cases[i].embedding ? " --quant-embedding" : "",
                  (long long)st.weight_bytes, (long long)st.step_weight_bytes, (long long)cases[i].table);
        }
        petrel_program_free(p);
        remove(out_path);
    }
    /* MoE: the experts' weights are neither read whole nor tables.  The
     * fixture's two layers have 4 experts of gate_up (64, 32) and down
     * (32, 32) in f32: 2 * 4 * (64 + 32) * 32 * 4 bytes float; quantized,
     * what petrel_program_quant_weight reports for its 3-D weights. */
    for (int q = 0; q < 2; q++) {
        petrel_compile_opts o = {.quant = q ? "int8" : NULL};
        petrel_compile_report r;
        petrel_program_t *p = NULL;
        petrel_program_stats st;
        if (petrel_compile(&r, "tests/fixtures/qwen3_moe_export/model.pt2", out_path, &o) != PETREL_OK ||
            petrel_program_load(&p, out_path, NULL) != PETREL_OK || petrel_program_get_stats(&st, p) != PETREL_OK) {
            CHECK(0, "qwen3_moe_export %s: %s", q ? "int8" : "float", petrel_last_error());
        } else {
            int64_t want = 2 * 4 * (64 + 32) * 32 * 4, table = 256 * 32 * 4;
            petrel_quant_info qi;
            int nexp = 0;
            if (q) want = 0;
            for (int i = 0; q && petrel_program_quant_weight(&qi, p, i) == PETREL_OK; i++)
                if (qi.experts > 1) want += qi.bytes, nexp++;
            CHECK(st.expert_weight_bytes == want && st.weight_bytes - st.step_weight_bytes == want + table &&
                      (!q || nexp == 4),
                  "qwen3_moe_export %s: %lld expert bytes (want %lld, %d quantized expert weights), %lld weight bytes, "
                  "%lld read by a call",
                  q ? "int8" : "float", (long long)st.expert_weight_bytes, (long long)want, nexp,
                  (long long)st.weight_bytes, (long long)st.step_weight_bytes);
        }
        petrel_program_free(p);
        remove(out_path);
    }
}

/* ---- 3. out of memory -------------------------------------------------------------- */

/* The archive at in as a graph, no pass run yet. */
static bool import_raw(const char *in, pt_mapping *map, pz_archive *z, pt_graph *g) {
    pt_err err = {{0}};
    memset(g, 0, sizeof *g);
    if (pt_map_file(map, in, &err) != PETREL_OK) {
        CHECK(0, "%s: %s", in, err.msg);
        return false;
    }
    if (pz_open_memory(z, map->data, map->size, &err) != PETREL_OK || pt2_import(g, z, &err) != PETREL_OK) {
        CHECK(0, "%s: %s", in, err.msg);
        pt_unmap_file(map);
        return false;
    }
    return true;
}

/* The archive at in, fused as the quantizer expects it. */
static bool import(const char *in, pt_mapping *map, pz_archive *z, pt_graph *g) {
    if (!import_raw(in, map, z, g)) return false;
    pc_fuse(g);
    pc_fuse_experts(g);
    return true;
}

/* in: a tied model (shared codes, a dropped weight) or an MoE one (3-D
 * expert weights). */
static void test_out_of_memory(const char *in) {
    const char *skip[] = {"*k_proj*"}; /* a split */
    pc_quant_opts o = {.embedding = true, .experts = true, .skip = skip, .nskip = 1};
    pt_err err = {{0}};
    CHECK(pc_quant_parse("int4", &o, &err) == PETREL_OK, "parse: %s", err.msg);
    pt_mapping map;
    pz_archive z;
    pt_graph g;
    pc_quant_result r;
    if (!import(in, &map, &z, &g)) return;
    pt_alloc_fail_at(0);
    CHECK(pc_quantize(&g, &o, &r, &err) == PETREL_OK, "quantize: %s", err.msg);
    int64_t total = pt_alloc_fail_at(0);
    CHECK(pt_graph_verify(&g, &err) == PETREL_OK, "quantized graph: %s", err.msg);
    pt_graph_free(&g);
    pc_quant_free(&r);
    pz_close(&z);
    pt_unmap_file(&map);
    for (int64_t n = 1; n <= total; n++) {
        if (!import(in, &map, &z, &g)) return;
        pt_alloc_fail_at(n);
        petrel_status st = pc_quantize(&g, &o, &r, &err);
        pt_alloc_fail_at(0);
        CHECK(st == PETREL_ERR_NOMEM, "allocation %lld of %lld failing: %s", (long long)n, (long long)total,
              petrel_status_str(st));
        pt_graph_free(&g);
        pc_quant_free(&r);
        pz_close(&z);
        pt_unmap_file(&map);
    }
}

int main(void) {
    test_reference();
    test_moe_reference();
    static const char *fixtures[] = {"llama_export", "llama_bf16_export", "qwen3_export", "gemma3_export",
                                     "phi3_export", "qwen3_moe_export", "whisper_export"};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) test_schemes(fixtures[i]);
    test_bias();
    test_skip();
    test_tied("tests/fixtures/llm/llama.pt2", "model.model.embed_tokens.weight");
    test_tied("tests/fixtures/gemma3_export/model.pt2", "model.model.embed_tokens.weight");
    test_bad_schemes();
    test_step_bytes();
    test_out_of_memory("tests/fixtures/llm/llama.pt2");
    test_out_of_memory("tests/fixtures/qwen3_moe_export/model.pt2");
    test_end_to_end();
    test_qkv_attn();
    test_qkv_attn_limits();
    printf("test_quant: %d failure%s\n", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
