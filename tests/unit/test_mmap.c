/*
** test_mmap.c -- a 1 GiB program is mapped, not read: write a program whose
** weight is 1 GiB (a graph that reads only its first 4 elements), load it
** through the public API, run it, and check that resident memory grew by
** far less than the file size.  White-box: the graph is built by hand.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/format.h"

#define WEIGHT_ELEMS (1LL << 28) /* f32: 1 GiB */

static long resident_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void set_tensor(pt_arg *a, int32_t vid) {
    a->kind = PT_ARG_TENSOR;
    a->n = 1;
    a->items = pt_calloc(1, sizeof *a->items);
    a->items[0].vid = vid;
}

static void set_int(pt_arg *a, int64_t v) {
    a->kind = PT_ARG_INT;
    a->n = 1;
    a->items = pt_calloc(1, sizeof *a->items);
    a->items[0] = (pt_item){-1, v, (double)v};
}

/* y = w[0:4] + x, with w a 1 GiB parameter. */
static void build(pt_graph *g, const uint8_t *wdata) {
    memset(g, 0, sizeof *g);
    g->dialect = pt_strdup("ATEN");
    g->schema_major = 8;
    g->nvalues = g->cap_values = 4;
    g->values = pt_calloc(4, sizeof *g->values);
    const char *names[4] = {"x", "w", "w_head", "y"};
    pt_vsrc srcs[4] = {PT_SRC_USER_INPUT, PT_SRC_PARAM, PT_SRC_NODE, PT_SRC_NODE};
    for (int i = 0; i < 4; i++) {
        pt_value *v = &g->values[i];
        v->name = pt_strdup(names[i]);
        v->kind = PT_V_TENSOR;
        v->src = srcs[i];
        v->dtype = PETREL_DTYPE_F32;
        v->rank = 1;
        v->shape[0].lit = i == 1 ? WEIGHT_ELEMS : 4;
        v->strides[0] = 1;
    }
    g->values[1].data = wdata;
    g->values[1].data_bytes = WEIGHT_ELEMS * 4;
    g->values[1].fqn = pt_strdup("w");
    g->nnodes = 2;
    g->nodes = pt_calloc(2, sizeof *g->nodes);
    pt_node *sl = &g->nodes[0], *add = &g->nodes[1];
    sl->op = PETREL_OP_SLICE;
    sl->nargs = 5;
    sl->args = pt_calloc(5, sizeof *sl->args);
    set_tensor(&sl->args[0], 1);
    set_int(&sl->args[1], 0);
    set_int(&sl->args[2], 0);
    set_int(&sl->args[3], 4);
    set_int(&sl->args[4], 1);
    sl->nout = 1;
    sl->outs = pt_calloc(1, sizeof *sl->outs);
    sl->outs[0] = 2;
    sl->name = pt_strdup("w_head");
    add->op = PETREL_OP_ADD_TENSOR;
    add->nargs = 3;
    add->args = pt_calloc(3, sizeof *add->args);
    set_tensor(&add->args[0], 2);
    set_tensor(&add->args[1], 0);
    set_int(&add->args[2], 1);
    add->nout = 1;
    add->outs = pt_calloc(1, sizeof *add->outs);
    add->outs[0] = 3;
    add->name = pt_strdup("y");
    g->ninputs = 1;
    g->inputs = pt_calloc(1, sizeof *g->inputs);
    g->inputs[0] = 0;
    g->noutputs = 1;
    g->outputs = pt_calloc(1, sizeof *g->outputs);
    g->outputs[0] = (pt_user_output){{3, 0, 0}, PT_V_TENSOR};
}

int main(void) {
    size_t bytes = (size_t)WEIGHT_ELEMS * 4;
    /* weight source: anonymous memory, first elements 1..4, rest zero pages */
    float *w = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) {
        printf("test_mmap: cannot reserve 1 GiB of address space\n");
        return 1;
    }
    for (int i = 0; i < 4; i++) w[i] = (float)(i + 1);
    char path[] = "/tmp/petrel-test-mmap-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 1;
    close(fd);
    pt_graph g;
    build(&g, (const uint8_t *)w);
    pt_err err;
    petrel_status st = pf_write(&g, NULL, 0, path, &err);
    pt_graph_free(&g);
    munmap(w, bytes);
    if (st != PETREL_OK) {
        printf("test_mmap: write failed: %s\n", err.msg);
        remove(path);
        return 1;
    }
    long before = resident_kb();
    petrel_program_t *p = NULL;
    int rc = 1;
    if (petrel_program_load(&p, path, NULL) != PETREL_OK) {
        printf("test_mmap: load failed: %s\n", petrel_last_error());
        goto out;
    }
    float x[4] = {10, 20, 30, 40};
    petrel_tensor_desc in = {.dtype = PETREL_DTYPE_F32, .rank = 1, .shape = {4}, .data = x}, y;
    petrel_value_kind kind;
    if (petrel_program_set_input(p, 0, &in) != PETREL_OK || petrel_program_execute(p) != PETREL_OK ||
        petrel_program_get_output(&y, p, 0, &kind) != PETREL_OK) {
        printf("test_mmap: run failed: %s\n", petrel_program_error(p));
        goto out;
    }
    const float *yd = y.data;
    long grown = resident_kb() - before;
    bool values_ok = yd[0] == 11 && yd[1] == 22 && yd[2] == 33 && yd[3] == 44;
    printf("test_mmap: 1 GiB program loaded and run; resident memory grew by %ld KiB; output %s\n", grown,
           values_ok ? "correct" : "WRONG");
    rc = (values_ok && grown < 64 * 1024) ? 0 : 1;
out:
    petrel_program_free(p);
    remove(path);
    return rc;
}
