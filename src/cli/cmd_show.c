/*
** cmd_show.c -- `petrel show`: print the tensors of a safetensors file
** (dtype, shape, a few values, and the arg-max of the last row, which for
** LLM logits is the greedy next token).
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_show(int argc, char **argv) {
    if (argc != 1 || argv[0][0] == '-') return cli_error("usage: petrel show FILE.safetensors");
    petrel_tensor_file_t *f = NULL;
    if (petrel_tensor_file_read(&f, argv[0]) != PETREL_OK) return cli_error("%s", petrel_last_error());
    for (int i = 0; i < petrel_tensor_file_count(f); i++) {
        const char *name = petrel_tensor_file_name(f, i);
        petrel_tensor_desc t;
        petrel_tensor_file_get(&t, f, name);
        printf("%s: %s [", name, petrel_dtype_name(t.dtype));
        for (int d = 0; d < t.rank; d++) printf("%s%" PRId64, d ? ", " : "", t.shape[d]);
        printf("]\n  values:");
        int64_t n = petrel_tensor_numel(&t);
        for (int64_t k = 0; k < n && k < 8; k++) printf(" %.5g", petrel_tensor_get_f64(&t, k));
        if (n > 8) printf(" ...");
        printf("\n");
        if (t.rank >= 1 && n > 0 && t.shape[t.rank - 1] > 1) {
            int64_t row = t.shape[t.rank - 1], base = n - row, best = 0;
            for (int64_t k = 1; k < row; k++)
                if (petrel_tensor_get_f64(&t, base + k) > petrel_tensor_get_f64(&t, base + best)) best = k;
            printf("  argmax of last row: %" PRId64 " (%.5g)\n", best, petrel_tensor_get_f64(&t, base + best));
        }
    }
    petrel_tensor_file_free(f);
    return 0;
}
