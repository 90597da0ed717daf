/*
** test_threads.c -- the CPU kernels' threads (runtime/pool.c) change no
** result: LLM fixtures (float, and compiled with int8 / int4 weights so
** the quantized products run) give bit-identical outputs with 1 thread
** and with 2 and 3, every parallel loop split (pt_pool_set_min_work(1)),
** on fresh random token ids; a negative thread count is refused.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "petrel.h"
#include "runtime/pool.h"

#define L 5

/* Output 0 of `path` on ids with `threads` threads; malloc'd, NULL on failure. */
static float *run(const char *path, int32_t threads, const int64_t *ids, int64_t *count) {
    petrel_program_t *p = NULL;
    petrel_load_opts o = {.threads = threads};
    if (petrel_program_load(&p, path, &o) != PETREL_OK) {
        CHECK(0, "%s, %d threads: load: %s", path, (int)threads, petrel_last_error());
        return NULL;
    }
    int64_t pos[L];
    for (int i = 0; i < L; i++) pos[i] = i;
    petrel_tensor_desc ti = {.dtype = PETREL_DTYPE_I64, .rank = 2, .shape = {1, L}, .data = (void *)ids};
    petrel_tensor_desc tp = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {L}, .data = pos};
    petrel_tensor_desc out;
    float *copy = NULL;
    if (petrel_program_set_input(p, petrel_program_find_input(p, "input_ids"), &ti) ||
        petrel_program_set_input(p, petrel_program_find_input(p, "cache_position"), &tp) ||
        petrel_program_execute(p) || petrel_program_get_output(&out, p, 0, NULL)) {
        CHECK(0, "%s, %d threads: run: %s", path, (int)threads, petrel_program_error(p));
    } else {
        *count = petrel_tensor_numel(&out) * (int64_t)petrel_dtype_size(out.dtype);
        copy = malloc((size_t)*count);
        memcpy(copy, out.data, (size_t)*count);
    }
    petrel_program_free(p);
    return copy;
}

static void check_model(const char *path) {
    int64_t ids[L];
    for (int i = 0; i < L; i++) ids[i] = rand() % 200;
    int64_t n1 = 0;
    float *one = run(path, 1, ids, &n1);
    for (int32_t t = 2; one && t <= 3; t++) {
        int64_t nt = 0;
        float *many = run(path, t, ids, &nt);
        CHECK(many && nt == n1 && !memcmp(one, many, (size_t)n1), "%s: %d threads give other bytes than 1", path,
              (int)t);
        free(many);
    }
    free(one);
}

int main(void) {
    srand((unsigned)time(NULL));
    pt_pool_set_min_work(1); /* split every loop, however small */
    const char *models[] = {"tests/fixtures/llm/llama.pt2", "tests/fixtures/llm/qwen3.pt2"};
    const char *quants[] = {"int8", "int4"};
    for (int m = 0; m < 2; m++) {
        check_model(models[m]);
        for (int q = 0; q < 2; q++) {
            const char *tmp = "build-test-threads.petrel";
            petrel_compile_opts co = {.quant = quants[q]};
            if (petrel_compile(NULL, models[m], tmp, &co) != PETREL_OK) {
                CHECK(0, "%s --quant %s: %s", models[m], quants[q], petrel_last_error());
                continue;
            }
            check_model(tmp);
            remove(tmp);
        }
    }
    petrel_program_t *p = NULL;
    petrel_load_opts bad = {.threads = -1};
    CHECK(petrel_program_load(&p, models[0], &bad) == PETREL_ERR_INVALID_ARG && !p, "threads -1 accepted");
    printf("test_threads: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
