/*
** test_threads.c -- the CPU kernels' threads (runtime/pool.c) change no
** result: LLM fixtures (float, and compiled with int8 / int4 weights so
** the quantized products run) give bit-identical outputs with 1 thread
** and with 2 and 3, every parallel loop split (pt_pool_set_min_work(1)),
** on fresh random token ids; so does a hand-built petrel.sdpa_cache with
** two KV heads (the fixtures' models have one, and the attention splits
** by KV head); a negative thread count is refused.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/format.h"
#include "petrel.h"
#include "runtime/pool.h"

#include "check.h"
#include "graph_util.h"

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

/* q (1, 4, 3, 8), k, v (1, 2, 3, 8), caches (1, 2, 16, 8): two calls
 * (positions 0..2, then 3..5) of sdpa_cache with `threads` threads; the
 * second call's output, malloc'd (NULL on failure). */
static float *run_attention(const pt_graph *g, int32_t threads, const float *data) {
    const char *path = "build-test-threads-attn.petrel";
    pt_err err = {{0}};
    petrel_program_t *p = NULL;
    petrel_load_opts o = {.threads = threads};
    if (pf_write(g, NULL, 0, path, &err) != PETREL_OK || petrel_program_load(&p, path, &o) != PETREL_OK) {
        CHECK(0, "attention, %d threads: %s", (int)threads, err.msg[0] ? err.msg : petrel_last_error());
        remove(path);
        return NULL;
    }
    remove(path);
    float *copy = NULL;
    for (int call = 0; call < 2; call++) {
        int64_t pos[3] = {3 * call, 3 * call + 1, 3 * call + 2};
        const int64_t shapes[3][4] = {{1, 4, 3, 8}, {1, 2, 3, 8}, {1, 2, 3, 8}};
        petrel_status st = PETREL_OK;
        for (int i = 0; i < 3 && st == PETREL_OK; i++) {
            petrel_tensor_desc d = {PETREL_DTYPE_F32, 4, {shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]},
                                    (void *)(data + (call * 3 + i) * 96)};
            st = petrel_program_set_input(p, i, &d);
        }
        petrel_tensor_desc pd = {PETREL_DTYPE_I64, 1, {3}, pos}, out;
        if (st || petrel_program_set_input(p, 3, &pd) || petrel_program_execute(p) ||
            petrel_program_get_output(&out, p, 0, NULL)) {
            CHECK(0, "attention, %d threads: run: %s", (int)threads, petrel_program_error(p));
            break;
        }
        if (call == 1) {
            copy = malloc(96 * sizeof(float));
            memcpy(copy, out.data, 96 * sizeof(float));
        }
    }
    petrel_program_free(p);
    return copy;
}

static void check_attention(void) {
    pt_graph g;
    tg_init(&g);
    petrel_dtype f = PETREL_DTYPE_F32;
    int32_t q = hv(&g, PT_SRC_USER_INPUT, f, 4, DIMS(1, 4, 3, 8));
    int32_t k = hv(&g, PT_SRC_USER_INPUT, f, 4, DIMS(1, 2, 3, 8));
    int32_t v = hv(&g, PT_SRC_USER_INPUT, f, 4, DIMS(1, 2, 3, 8));
    int32_t pos = hv(&g, PT_SRC_USER_INPUT, PETREL_DTYPE_I64, 1, DIMS(3));
    int32_t kc = hv(&g, PT_SRC_BUFFER, f, 4, DIMS(1, 2, 16, 8)), vc = hv(&g, PT_SRC_BUFFER, f, 4, DIMS(1, 2, 16, 8));
    int32_t o = HN(&g, PETREL_OP_PETREL_SDPA_CACHE, q, q, k, v, kc, vc, pos, -1, -1, -2, -1, -1);
    tg_defaults(&g);
    g.outputs = pt_calloc(1, sizeof *g.outputs);
    g.outputs[g.noutputs++] = (pt_user_output){{o, 0, 0}, PT_V_TENSOR};
    float data[6 * 96];
    for (int i = 0; i < 6 * 96; i++) data[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    float *one = run_attention(&g, 1, data), *two = run_attention(&g, 2, data);
    CHECK(one && two && !memcmp(one, two, 96 * sizeof(float)), "attention: 2 threads give other bytes than 1");
    free(one);
    free(two);
    pt_graph_free(&g);
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
    check_attention();
    petrel_program_t *p = NULL;
    petrel_load_opts bad = {.threads = -1};
    CHECK(petrel_program_load(&p, models[0], &bad) == PETREL_ERR_INVALID_ARG && !p, "threads -1 accepted");
    printf("test_threads: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
