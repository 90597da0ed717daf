/*
** minimal.c -- the smallest complete use of petrel's public API: load a
** program (.pt2 or .petrel), fill each tensor input with a deterministic
** ramp, execute twice (state such as a KV cache carries over), and print a
** summary of every output.  Uses nothing but <petrel.h>.
**
**   build/examples/minimal model.pt2
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petrel.h>

/* Fill a float or integer buffer with small, distinct values; integers
 * are 1..limit, starting at `start`. */
static void fill(petrel_tensor_desc *t, int64_t limit, int64_t start) {
    int64_t n = petrel_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case PETREL_DTYPE_F32: ((float *)t->data)[i] = (float)((i % 17) - 8) / 8.0f; break;
        case PETREL_DTYPE_I64: ((int64_t *)t->data)[i] = 1 + (start + i) % limit; break;
        case PETREL_DTYPE_I32: ((int32_t *)t->data)[i] = (int32_t)(1 + (start + i) % limit); break;
        default: memset(t->data, 0, (size_t)n * petrel_dtype_size(t->dtype)); return;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PROGRAM\n", argv[0]);
        return 1;
    }
    petrel_program_t *prog = NULL;
    if (petrel_program_load(&prog, argv[1], NULL) != PETREL_OK) {
        fprintf(stderr, "%s\n", petrel_last_error());
        return 1;
    }
    int rc = 0;
    void *bufs[64] = {0};
    int nin = petrel_program_num_inputs(prog);
    for (int call = 0; call < 2 && rc == 0; call++) {
        for (int i = 0; i < nin && i < 64; i++) {
            petrel_io_info io;
            petrel_program_input_info(&io, prog, i);
            if (io.kind != PETREL_VALUE_TENSOR) {
                petrel_program_set_input_int(prog, i, 1);
                continue;
            }
            /* dynamic dimensions get size 1; int inputs get small ids that
             * change from call to call, and a rank-1 int input (a position)
             * is the call's index */
            petrel_tensor_desc t = {.dtype = io.dtype, .rank = io.rank};
            for (int d = 0; d < io.rank; d++) t.shape[d] = io.shape[d] < 0 ? 1 : io.shape[d];
            free(bufs[i]);
            bufs[i] = t.data = calloc((size_t)petrel_tensor_numel(&t) + 1, petrel_dtype_size(t.dtype));
            fill(&t, 8, call);
            if (t.dtype == PETREL_DTYPE_I64 && t.rank == 1) ((int64_t *)t.data)[0] = call; /* a position */
            if (petrel_program_set_input(prog, i, &t) != PETREL_OK) {
                fprintf(stderr, "input %s: %s\n", io.name, petrel_program_error(prog));
                rc = 1;
            }
        }
        if (rc == 0 && petrel_program_execute(prog) != PETREL_OK) {
            fprintf(stderr, "%s\n", petrel_program_error(prog));
            rc = 1;
        }
        for (int i = 0; rc == 0 && i < petrel_program_num_outputs(prog); i++) {
            petrel_tensor_desc out;
            petrel_value_kind kind;
            petrel_program_get_output(&out, prog, i, &kind);
            double sum = 0;
            if (out.dtype == PETREL_DTYPE_F32)
                for (int64_t k = 0; k < petrel_tensor_numel(&out); k++) sum += ((const float *)out.data)[k];
            printf("call %d output_%d: %s rank %d, %lld elements, sum %.6g\n", call, i,
                   petrel_dtype_name(out.dtype), out.rank, (long long)petrel_tensor_numel(&out), sum);
        }
    }
    for (int i = 0; i < 64; i++) free(bufs[i]);
    petrel_program_free(prog);
    return rc;
}
