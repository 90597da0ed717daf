/*
** test_format_compat.c -- a program written before an op's schema gained
** trailing arguments (docs/FORMAT.md, evolution rules) still loads: the
** reader gives the missing arguments their schema defaults, as the .pt2
** importer does.  A hand-built graph whose aten.add.Tensor stores 2 of
** its 3 arguments (alpha=1 left out) is written, loaded and run on random
** inputs (out = a + b); a node that leaves out an argument without a
** default is refused with a status.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/format.h"

#include "check.h"
#include "graph_util.h"

static const char *out_path = "build-test-format-compat.petrel";

/* out = a + b with `nargs` stored arguments of the op `op` (a, b first). */
static void build(pt_graph *g, pt_op op, int nargs) {
    tg_init(g);
    g->values = calloc(8, sizeof *g->values);
    int64_t s = 5;
    int32_t a = tg_value(g, "a", PT_SRC_USER_INPUT, PETREL_DTYPE_F32, 1, &s);
    int32_t b = tg_value(g, "b", PT_SRC_USER_INPUT, PETREL_DTYPE_F32, 1, &s);
    int32_t out = tg_value(g, "out", PT_SRC_NODE, PETREL_DTYPE_F32, 1, &s);
    pt_node *n = tg_node(g, op, nargs, 1, &out);
    for (int i = 0; i < nargs; i++) {
        n->args[i].kind = PT_ARG_TENSOR;
        n->args[i].n = 1;
        n->args[i].items = calloc(1, sizeof(pt_item));
        n->args[i].items[0] = (pt_item){i == 0 ? a : b, 0, 0.0};
    }
    g->outputs = calloc(1, sizeof *g->outputs);
    g->outputs[g->noutputs++] = (pt_user_output){{out, 0, 0}, PT_V_TENSOR};
}

int main(void) {
    srand((unsigned)time(NULL));
    pt_graph g;
    pt_err err = {{0}};
    build(&g, PETREL_OP_ADD_TENSOR, 2); /* alpha left out */
    CHECK(pf_write(&g, NULL, 0, out_path, &err) == PETREL_OK, "write: %s", err.msg);
    pt_graph_free(&g);
    petrel_program_t *p = NULL;
    if (petrel_program_load(&p, out_path, NULL) != PETREL_OK) {
        CHECK(0, "a program without a trailing default argument does not load: %s", petrel_last_error());
    } else {
        float av[5], bv[5];
        for (int i = 0; i < 5; i++) av[i] = (float)rand() / RAND_MAX - 0.5f, bv[i] = (float)rand() / RAND_MAX * 4.0f;
        petrel_tensor_desc ta = {.dtype = PETREL_DTYPE_F32, .rank = 1, .shape = {5}, .data = av};
        petrel_tensor_desc tb = {.dtype = PETREL_DTYPE_F32, .rank = 1, .shape = {5}, .data = bv};
        petrel_tensor_desc o;
        CHECK(!petrel_program_set_input(p, 0, &ta) && !petrel_program_set_input(p, 1, &tb) &&
                  !petrel_program_execute(p) && !petrel_program_get_output(&o, p, 0, NULL),
              "run: %s", petrel_program_error(p));
        for (int i = 0; i < 5; i++)
            CHECK(((const float *)o.data)[i] == av[i] + bv[i], "out[%d] = %g, want %g (alpha = 1)", i,
                  ((const float *)o.data)[i], av[i] + bv[i]);
        petrel_program_free(p);
    }
    build(&g, PETREL_OP_ADD_TENSOR, 1); /* `other` has no default */
    CHECK(pf_write(&g, NULL, 0, out_path, &err) == PETREL_OK, "write: %s", err.msg);
    pt_graph_free(&g);
    p = NULL;
    petrel_status st = petrel_program_load(&p, out_path, NULL);
    CHECK(st == PETREL_ERR_FORMAT && strstr(petrel_last_error(), "'other' missing"),
          "a node without a required argument: status %d, '%s'", (int)st, petrel_last_error());
    petrel_program_free(p);
    remove(out_path);
    printf("test_format_compat: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
