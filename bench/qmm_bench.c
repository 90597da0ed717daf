/*
** qmm_bench.c -- time one quantized linear (petrel.qlinear) against the
** float linear (aten.linear) on the CPU, each as a one-node graph run by
** the executor, so argument checks and output rounding are counted: a
** GEMV x (M, K) @ W (N, K)^T, median of the repeats.  Weights are random
** (times do not depend on values).  Not a test.
**
**     cmake --build build && cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/qmm_bench.c \
**         build/libpetrel_static.a -ljansson -lpcre2-8 -lutf8proc -lz -lm -o qmm_bench
**     ./qmm_bench [K N M repeats]      (default 2048 8192 1 50)
**
** Prints one line per variant: name, median ms, weight GB/s read.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/cpu/fast/fast.h"
#include "runtime/exec.h"

static int64_t K = 2048, N = 8192, M = 1;
static int reps = 50;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A constant of the given meta over `data` (borrowed), or a node result (data NULL). */
static int32_t value(pt_graph *g, const char *name, petrel_dtype dt, int64_t r0, int64_t r1, void *data) {
    g->values = pt_realloc(g->values, (size_t)(g->nvalues + 1) * sizeof *g->values);
    g->cap_values = g->nvalues + 1;
    pt_value *v = &g->values[g->nvalues];
    memset(v, 0, sizeof *v);
    v->name = pt_strdup(name);
    v->kind = PT_V_TENSOR;
    v->src = data ? PT_SRC_CONST : PT_SRC_NODE;
    v->dtype = dt;
    v->rank = 2;
    v->shape[0].lit = r0, v->shape[1].lit = r1;
    v->strides[0] = r1, v->strides[1] = 1;
    v->data = data;
    v->data_bytes = r0 * r1 * (int64_t)petrel_dtype_size(dt);
    return g->nvalues++;
}

static void *random_bytes(int64_t n) {
    uint8_t *p = malloc((size_t)n);
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = (uint8_t)s;
    }
    return p;
}

/* Random floats of dtype dt in [-0.5, 0.5) * scale. */
static void *random_floats(petrel_dtype dt, int64_t n, double scale) {
    uint8_t *p = malloc((size_t)n * petrel_dtype_size(dt));
    for (int64_t i = 0; i < n; i++)
        pt_store_f64(p + i * (int64_t)petrel_dtype_size(dt), dt, ((double)rand() / RAND_MAX - 0.5) * scale);
    return p;
}

static void arg_tensors(pt_arg *a, pt_arg_kind kind, const int32_t *vids, int n) {
    a->kind = kind;
    a->n = n;
    a->items = n ? pt_calloc((size_t)n, sizeof *a->items) : NULL;
    for (int i = 0; i < n; i++) a->items[i].vid = vids[i];
}

/* Run g reps times; median ms (negative on failure). */
static double time_graph(const pt_graph *g) {
    pt_err err = {{0}};
    pt_exec ex;
    if (pt_graph_verify(g, &err) != PETREL_OK || pt_exec_init(&ex, g, &err) != PETREL_OK) {
        printf("  setup: %s\n", err.msg);
        return -1;
    }
    double *t = malloc(sizeof(double) * (size_t)reps), med = -1;
    if (pt_exec_run(&ex) == PETREL_OK) { /* warm-up: scratch grown, weights paged in */
        for (int r = 0; r < reps; r++) {
            double t0 = now_ms();
            pt_exec_run(&ex);
            t[r] = now_ms() - t0;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        med = t[reps / 2];
    } else {
        printf("  run: %s\n", err.msg);
    }
    free(t);
    pt_exec_free(&ex);
    return med;
}

static void report(const char *name, double ms, double weight_bytes) {
    if (ms >= 0) printf("%-28s %9.3f ms  %6.1f GB/s of weights\n", name, ms, weight_bytes / (ms * 1e-3) / 1e9);
}

/* aten.linear(x, W) with W (N, K) of dtype dt, x of dtype dt. */
static void bench_linear(petrel_dtype dt) {
    pt_graph g;
    memset(&g, 0, sizeof g);
    g.dialect = pt_strdup("TRAINING");
    void *xd = random_floats(dt, M * K, 2.0), *wd = random_floats(dt, N * K, 0.05);
    int32_t x = value(&g, "x", dt, M, K, xd), w = value(&g, "w", dt, N, K, wd), y = value(&g, "y", dt, M, N, NULL);
    g.nodes = pt_calloc(1, sizeof *g.nodes);
    pt_node *n = &g.nodes[g.nnodes++];
    n->op = PETREL_OP_LINEAR;
    n->nargs = 3;
    n->args = pt_calloc(3, sizeof *n->args);
    arg_tensors(&n->args[0], PT_ARG_TENSOR, &x, 1);
    arg_tensors(&n->args[1], PT_ARG_TENSOR, &w, 1);
    n->nout = 1;
    n->outs = pt_calloc(1, sizeof *n->outs);
    n->outs[0] = y;
    n->name = pt_strdup("y");
    g.outputs = pt_calloc(1, sizeof *g.outputs);
    g.outputs[g.noutputs++] = (pt_user_output){{y, 0, 0}, PT_V_TENSOR};
    char name[64];
    snprintf(name, sizeof name, "linear %s", petrel_dtype_name(dt));
    report(name, time_graph(&g), (double)(N * K) * (double)petrel_dtype_size(dt));
    pt_graph_free(&g);
    free(xd);
    free(wd);
}

/* petrel.qlinear(x, [codes], [scales], [zeros], format, G) with x and scales
 * bf16, on path 0 (the reference loops), 1 (the fast kernels: AVX-512
 * where the CPU has it) or 2 (the fast kernels' AVX2 loops). */
static void bench_qlinear(const char *fmt, int bits, bool asym, int64_t G, int path) {
    petrel_dtype dt = PETREL_DTYPE_BF16;
    bool fp4 = !strcmp(fmt, "nvfp4");
    pt_graph g;
    memset(&g, 0, sizeof g);
    g.dialect = pt_strdup("TRAINING");
    float t = 0.01f;
    void *xd = random_floats(dt, M * K, 2.0), *cd = random_bytes(N * K * bits / 8);
    void *sd = fp4 ? random_bytes(N * K / G) : random_floats(dt, N * K / G, 0.05);
    int8_t *zd = malloc((size_t)(N * K / G));
    for (int64_t i = 0; i < N * K / G; i++) zd[i] = (int8_t)(bits == 8 ? i % 256 - 128 : i % (1 << bits));
    if (fp4)
        for (int64_t i = 0; i < N * K / G; i++) ((uint8_t *)sd)[i] &= 0x77; /* finite, positive */
    int32_t x = value(&g, "x", dt, M, K, xd), c = value(&g, "codes", PETREL_DTYPE_U8, N, K * bits / 8, cd);
    int32_t s = value(&g, "scales", fp4 ? PETREL_DTYPE_U8 : dt, N, K / G, sd);
    int32_t z = fp4 ? value(&g, "t", PETREL_DTYPE_F32, 1, 1, &t) : value(&g, "zeros", PETREL_DTYPE_I8, N, K / G, zd);
    int32_t y = value(&g, "y", dt, M, N, NULL);
    g.nodes = pt_calloc(1, sizeof *g.nodes);
    pt_node *n = &g.nodes[g.nnodes++];
    n->op = PETREL_OP_PETREL_QLINEAR;
    n->nargs = 14; /* 9 .. 13: the RMSNorm prologue, off */
    n->args = pt_calloc(14, sizeof *n->args);
    arg_tensors(&n->args[0], PT_ARG_TENSOR, &x, 1);
    arg_tensors(&n->args[1], PT_ARG_TENSORS, &c, 1);
    arg_tensors(&n->args[2], PT_ARG_TENSORS, &s, 1);
    arg_tensors(&n->args[3], PT_ARG_TENSORS, &z, asym || fp4 ? 1 : 0);
    const char *strs[4] = {fmt, NULL, "n", "silu"};
    for (int a = 5; a < 9; a++) {
        if (a == 6) {
            n->args[a].kind = PT_ARG_INT;
            n->args[a].n = 1;
            n->args[a].items = pt_calloc(1, sizeof *n->args[a].items);
            n->args[a].items[0] = (pt_item){-1, G, (double)G};
            continue;
        }
        n->args[a].kind = PT_ARG_STRING;
        n->args[a].str = pt_strdup(strs[a - 5]);
    }
    for (int a = 9; a < 13; a += a == 9 ? 2 : 1) { /* norm, norm_eps, norm_add_one */
        n->args[a].kind = a == 11 ? PT_ARG_FLOAT : PT_ARG_BOOL;
        n->args[a].n = 1;
        n->args[a].items = pt_calloc(1, sizeof *n->args[a].items);
        n->args[a].items[0] = (pt_item){-1, 0, a == 11 ? 1e-6 : 0};
    }
    n->nout = 1;
    n->outs = pt_calloc(1, sizeof *n->outs);
    n->outs[0] = y;
    n->name = pt_strdup("y");
    g.outputs = pt_calloc(1, sizeof *g.outputs);
    g.outputs[g.noutputs++] = (pt_user_output){{y, 0, 0}, PT_V_TENSOR};
    char name[64];
    static const char *paths[3] = {"reference", "fast", "fast avx2"};
    snprintf(name, sizeof name, "qlinear %s g%lld %s", fmt, (long long)G, paths[path]);
    cpu_fast_qmm_enable(path > 0);
    cpu_fast_qmm_avx512(path != 2);
    cpu_fast_gemm_avx512(path != 2);
    double bytes = (double)(N * K * bits / 8) + (double)(N * K / G) * (fp4 ? 1 : 2 + asym);
    report(name, time_graph(&g), bytes);
    cpu_fast_qmm_enable(true);
    cpu_fast_qmm_avx512(true);
    cpu_fast_gemm_avx512(true);
    pt_graph_free(&g);
    free(xd);
    free(cd);
    free(sd);
    free(zd);
}

int main(int argc, char **argv) {
    if (argc >= 4) K = atoll(argv[1]), N = atoll(argv[2]), M = atoll(argv[3]);
    if (argc >= 5) reps = atoi(argv[4]);
    printf("x (%lld, %lld) @ W (%lld, %lld)^T, median of %d\n", (long long)M, (long long)K, (long long)N, (long long)K,
           reps);
    bench_linear(PETREL_DTYPE_F32);
    bench_linear(PETREL_DTYPE_BF16);
    const int last = __builtin_cpu_supports("avx512f") ? 2 : 1; /* the AVX2 loops as a path of their own */
    for (int path = 1; path <= last; path++) {
        bench_qlinear("int8", 8, true, 32, path);
        bench_qlinear("int8s", 8, false, 32, path);
        bench_qlinear("int4", 4, true, 32, path);
        bench_qlinear("int4s", 4, false, 32, path);
        bench_qlinear("int4", 4, true, 128, path);
        bench_qlinear("int2", 2, true, 64, path);
        bench_qlinear("nvfp4", 4, false, 16, path);
    }
    bench_qlinear("int4", 4, true, 32, 0);
    return 0;
}
