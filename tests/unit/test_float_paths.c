/*
** test_float_paths.c -- the CPU kernels' float shortcuts give the bytes
** of ops.def's double semantics: aten.sum.dim_IntList over a middle dim
** (whole rows added in double, reduce.c's rd_sum_rows) and over the last
** dim (the gathered path), and aten.mul / add / sub / div.Tensor of two
** tensors of the output's dtype, one broadcast along the last dim (in
** float, binary.c's bin_row_fast), f32 and bf16, on fresh random values.
** The expected bytes are computed here: the double sum in index order or
** the double product, rounded to f32 and then (bf16) to bf16 as
** pt_store_f64 does.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "format/format.h"
#include "petrel.h"

#include "check.h"
#include "graph_util.h"

enum { A = 3, B = 8, C = 37 };

/* Argument a of the last node: tensor value v, the int list {d}, or false. */
static void arg_tensor(pt_node *n, int a, int32_t v) {
    n->args[a] = (pt_arg){.kind = PT_ARG_TENSOR, .n = 1, .items = pt_calloc(1, sizeof(pt_item))};
    n->args[a].items[0] = (pt_item){v, 0, 0};
}
static void arg_ints1(pt_node *n, int a, int64_t d) {
    n->args[a] = (pt_arg){.kind = PT_ARG_INTS, .n = 1, .items = pt_calloc(1, sizeof(pt_item))};
    n->args[a].items[0] = (pt_item){-1, d, 0};
}
static void arg_false(pt_node *n, int a) {
    n->args[a] = (pt_arg){.kind = PT_ARG_BOOL, .n = 1, .items = pt_calloc(1, sizeof(pt_item))};
    n->args[a].items[0] = (pt_item){-1, 0, 0};
}

static void set_output(pt_graph *g, int32_t v) {
    g->outputs = pt_calloc(1, sizeof *g->outputs);
    g->outputs[g->noutputs++] = (pt_user_output){{v, 0, 0}, PT_V_TENSOR};
}

/* v as stored in dtype dt (pt_store_f64's rounding), back as float bits. */
static void store(void *dst, petrel_dtype dt, double v) {
    if (dt == PETREL_DTYPE_F32) {
        float f = (float)v;
        memcpy(dst, &f, 4);
    } else {
        uint16_t h = pt_f32_to_bf16((float)v);
        memcpy(dst, &h, 2);
    }
}
static double load(const void *src, petrel_dtype dt) {
    if (dt == PETREL_DTYPE_F32) {
        float f;
        memcpy(&f, src, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, src, 2);
    return pt_bf16_to_f32(h);
}

static void fill(void *p, petrel_dtype dt, int64_t n) {
    size_t es = dt == PETREL_DTYPE_F32 ? 4 : 2;
    for (int64_t i = 0; i < n; i++) store((uint8_t *)p + i * es, dt, ((double)rand() / RAND_MAX * 2.0 - 1.0) * 3.0);
}

/* Run g (inputs given) once; its output 0 copied to out (bytes). */
static bool run(const pt_graph *g, const char *what, int nin, const petrel_tensor_desc *in, void *out, size_t bytes) {
    char why[600];
    petrel_program_t *p = tg_load(g, "build-test-float-paths.petrel", why, sizeof why);
    remove("build-test-float-paths.petrel");
    if (!p) {
        CHECK(0, "%s: load: %s", what, why);
        return false;
    }
    petrel_tensor_desc o;
    petrel_status st = PETREL_OK;
    for (int i = 0; i < nin && !st; i++) st = petrel_program_set_input(p, i, &in[i]);
    if (st || petrel_program_execute(p) || petrel_program_get_output(&o, p, 0, NULL)) {
        CHECK(0, "%s: run: %s", what, petrel_program_error(p));
        petrel_program_free(p);
        return false;
    }
    memcpy(out, o.data, bytes);
    petrel_program_free(p);
    return true;
}

/* sum over dim (1: rows of C added, the shortcut; 2: the gathered path). */
static void check_sum(petrel_dtype dt, int dim) {
    size_t es = dt == PETREL_DTYPE_F32 ? 4 : 2;
    int64_t on = dim == 1 ? C : B;
    pt_graph g;
    tg_init(&g);
    int32_t x = hv(&g, PT_SRC_USER_INPUT, dt, 3, DIMS(A, B, C));
    int32_t y = hv(&g, PT_SRC_NODE, dt, 2, DIMS(A, on));
    pt_node *n = tg_node(&g, PETREL_OP_SUM_DIM, 3, 1, &y);
    arg_tensor(n, 0, x);
    arg_ints1(n, 1, dim);
    arg_false(n, 2);
    tg_defaults(&g);
    set_output(&g, y);
    uint8_t xs[A * B * C * 4], got[A * B * 4 > A * C * 4 ? A * B * 4 : A * C * 4], want[sizeof got];
    fill(xs, dt, A * B * C);
    for (int64_t a = 0; a < A; a++)
        for (int64_t o = 0; o < on; o++) {
            double acc = 0;
            for (int64_t j = 0; j < (dim == 1 ? B : C); j++) {
                int64_t b = dim == 1 ? j : o, c = dim == 1 ? o : j;
                acc += load(xs + ((a * B + b) * C + c) * es, dt);
            }
            store(want + (a * on + o) * es, dt, acc);
        }
    petrel_tensor_desc in = {dt, 3, {A, B, C}, xs};
    char what[64];
    snprintf(what, sizeof what, "sum over dim %d, %s", dim, dt == PETREL_DTYPE_F32 ? "f32" : "bf16");
    if (run(&g, what, 1, &in, got, (size_t)(A * on) * es))
        CHECK(!memcmp(got, want, (size_t)(A * on) * es), "%s: other bytes than the double sum", what);
    pt_graph_free(&g);
}

/* x (A, B, C) op y (A, B, 1), the output's dtype. */
static void check_binary(petrel_dtype dt, pt_op op, char sym) {
    size_t es = dt == PETREL_DTYPE_F32 ? 4 : 2;
    pt_graph g;
    tg_init(&g);
    int32_t x = hv(&g, PT_SRC_USER_INPUT, dt, 3, DIMS(A, B, C));
    int32_t w = hv(&g, PT_SRC_USER_INPUT, dt, 3, DIMS(A, B, 1));
    int32_t y = hv(&g, PT_SRC_NODE, dt, 3, DIMS(A, B, C));
    pt_node *n = tg_node(&g, op, 2, 1, &y);
    arg_tensor(n, 0, x);
    arg_tensor(n, 1, w);
    tg_defaults(&g);
    set_output(&g, y);
    uint8_t xs[A * B * C * 4], ws[A * B * 4], got[A * B * C * 4], want[sizeof got];
    fill(xs, dt, A * B * C);
    fill(ws, dt, A * B);
    for (int64_t r = 0; r < A * B; r++)
        for (int64_t c = 0; c < C; c++) {
            double u = load(xs + (r * C + c) * es, dt), v = load(ws + r * es, dt);
            double z = sym == '+' ? u + v : sym == '-' ? u - v : sym == '*' ? u * v : u / v;
            store(want + (r * C + c) * es, dt, z);
        }
    petrel_tensor_desc in[2] = {{dt, 3, {A, B, C}, xs}, {dt, 3, {A, B, 1}, ws}};
    char what[64];
    snprintf(what, sizeof what, "x %c y, %s", sym, dt == PETREL_DTYPE_F32 ? "f32" : "bf16");
    if (run(&g, what, 2, in, got, (size_t)(A * B * C) * es))
        CHECK(!memcmp(got, want, (size_t)(A * B * C) * es), "%s: other bytes than the double op", what);
    pt_graph_free(&g);
}

int main(void) {
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    printf("test_float_paths: seed %u\n", seed);
    const petrel_dtype dts[2] = {PETREL_DTYPE_F32, PETREL_DTYPE_BF16};
    for (int i = 0; i < 2; i++) {
        check_sum(dts[i], 1);
        check_sum(dts[i], 2);
        check_binary(dts[i], PETREL_OP_MUL_TENSOR, '*');
        check_binary(dts[i], PETREL_OP_ADD_TENSOR, '+');
        check_binary(dts[i], PETREL_OP_SUB_TENSOR, '-');
        check_binary(dts[i], PETREL_OP_DIV_TENSOR, '/');
    }
    printf(failures ? "test_float_paths: %d failures\n" : "test_float_paths: ok\n", failures);
    return failures != 0;
}
