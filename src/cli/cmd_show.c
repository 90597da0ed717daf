/*
** cmd_show.c -- `petrel show`: print the tensors of a safetensors file
** (dtype, shape, a few values, and the arg-max of the last row, which for
** LLM logits is the greedy next token).
*/
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static double value_at(const petrel_tensor_desc *t, int64_t i) {
    const uint8_t *p = (const uint8_t *)t->data + (size_t)i * petrel_dtype_size(t->dtype);
    switch (t->dtype) {
    case PETREL_DTYPE_F32: { float x; memcpy(&x, p, 4); return x; }
    case PETREL_DTYPE_F64: { double x; memcpy(&x, p, 8); return x; }
    case PETREL_DTYPE_F16: {
        uint16_t h; memcpy(&h, p, 2);
        int e = (h >> 10) & 31, m = h & 1023;
        double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
        return (h & 0x8000) ? -v : v;
    }
    case PETREL_DTYPE_BF16: { uint16_t h; memcpy(&h, p, 2); uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
    case PETREL_DTYPE_I64: { int64_t x; memcpy(&x, p, 8); return (double)x; }
    case PETREL_DTYPE_I32: { int32_t x; memcpy(&x, p, 4); return x; }
    case PETREL_DTYPE_I16: { int16_t x; memcpy(&x, p, 2); return x; }
    case PETREL_DTYPE_I8: return *(const int8_t *)p;
    default: return *p;
    }
}

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
        for (int64_t k = 0; k < n && k < 8; k++) printf(" %.5g", value_at(&t, k));
        if (n > 8) printf(" ...");
        printf("\n");
        if (t.rank >= 1 && n > 0 && t.shape[t.rank - 1] > 1) {
            int64_t row = t.shape[t.rank - 1], base = n - row, best = 0;
            for (int64_t k = 1; k < row; k++)
                if (value_at(&t, base + k) > value_at(&t, base + best)) best = k;
            printf("  argmax of last row: %" PRId64 " (%.5g)\n", best, value_at(&t, base + best));
        }
    }
    petrel_tensor_file_free(f);
    return 0;
}
