/*
** test_topk.c -- top-k sampling from candidates (petrel_program_output_topk
** + petrel_sampler_sample_top) against the sampler's whole-row path:
**
**  1. pt_topk_row against a full sort (larger first, lower id on ties, NaN
**     never) on rows with ties, NaN, infinities and signed zeros;
**  2. for random rows (ties, NaN, small vocabularies with fewer numbers than
**     top_k) and several parameter sets, two samplers with one seed draw
**     the same tokens, one from the whole row, one from its top_k + 1
**     candidates;
**  3. petrel_program_output_topk on the tiny Llama fixture, on the CPU and
**     split with the loopback test device (the device's topk runs), equals
**     the full sort of the downloaded logits / temperature bit for bit; bad
**     arguments fail with a status.  With --cuda (the GPU suite), only
**     this, on the CUDA backend.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "prompt_util.h"
#include "core/core.h"
#include "petrel_llm.h"
#include "runtime/device.h"
#include "runtime/kernel.h"

#define VMAX 1000

typedef struct ref_cand {
    int32_t id;
    float v;
} ref_cand;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_cand *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Every number of x / t, sorted as pt_topk_row orders; returns the count. */
static int32_t ref_sort(const float *x, int32_t n, float t, ref_cand *out) {
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        float v = x[i] / t;
        if (!isnan(v)) out[m++] = (ref_cand){i, v};
    }
    qsort(out, (size_t)m, sizeof *out, ref_cmp);
    return m;
}

/* A row of n logits: values from a few levels (so ties are common), some
 * NaN, the odd infinity and signed zero. */
static void random_row(float *x, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        int r = rand() % 100;
        x[i] = r < 5 ? NAN : r < 7 ? -INFINITY : r < 8 ? (rand() % 2 ? 0.0f : -0.0f)
                                               : (float)(rand() % 40) * 0.25f - 5.0f;
    }
}

static void check_topk_row(void) {
    static float x[VMAX];
    static ref_cand ref[VMAX];
    int32_t ids[PETREL_TOPK_MAX], n;
    float vals[PETREL_TOPK_MAX];
    for (int trial = 0; trial < 200; trial++) {
        int32_t len = 1 + rand() % (trial < 100 ? 80 : VMAX), k = 1 + rand() % PETREL_TOPK_MAX;
        float t = trial % 3 ? 0.7f : 1.0f;
        random_row(x, len);
        int32_t m = ref_sort(x, len, t, ref);
        pt_tensor row = {.dtype = PETREL_DTYPE_F32, .rank = 1, .shape = {len}, .stride = {1}, .data = (uint8_t *)x};
        pt_topk_row(&row, k, t, ids, vals, &n);
        CHECK(n == (m < k ? m : k), "topk row %d: %d candidates, want %d", trial, (int)n, (int)(m < k ? m : k));
        for (int32_t i = 0; i < n && i < m; i++)
            CHECK(ids[i] == ref[i].id && vals[i] == ref[i].v, /* == : the key keeps no sign of zero */
                  "topk row %d: candidate %d is %d (%g), want %d (%g)", trial, (int)i, (int)ids[i], vals[i],
                  (int)ref[i].id, ref[i].v);
    }
}

static void check_sampler(void) {
    static float x[VMAX];
    const petrel_sampler_params base = petrel_sampler_default_params();
    struct {
        float temp, top_p, min_p;
        int32_t top_k;
    } sets[] = {{0.8f, 0.95f, 0.05f, 40}, {1.3f, 1.0f, 0.0f, 5}, {0.7f, 0.9f, 0.0f, 1}, {1.0f, 1.0f, 0.1f, 63},
                {0.5f, 0.5f, 0.0f, 20}};
    for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
        const int32_t vocabs[] = {7, 50, VMAX};
        for (size_t vi = 0; vi < 3; vi++) {
            int32_t V = vocabs[vi];
            petrel_sampler_params sp = base;
            sp.temperature = sets[si].temp, sp.top_p = sets[si].top_p, sp.min_p = sets[si].min_p;
            sp.top_k = sets[si].top_k, sp.seed = (uint64_t)rand();
            petrel_sampler_t *a = NULL, *b = NULL;
            if (petrel_sampler_new(&a, V, &sp) != PETREL_OK || petrel_sampler_new(&b, V, &sp) != PETREL_OK) {
                CHECK(0, "sampler_new");
                petrel_sampler_free(a);
                return;
            }
            CHECK(petrel_sampler_takes_top(b), "set %zu: takes_top", si);
            for (int d = 0; d < 60; d++) {
                random_row(x, V);
                x[rand() % V] = 1.0f; /* at least one number */
                int32_t ids[PETREL_TOPK_MAX], n, ta = -1, tb = -2;
                float vals[PETREL_TOPK_MAX];
                pt_tensor row = {.dtype = PETREL_DTYPE_F32, .rank = 1, .shape = {V}, .stride = {1}, .data = (uint8_t *)x};
                pt_topk_row(&row, sp.top_k + 1, sp.temperature, ids, vals, &n);
                CHECK(petrel_sampler_sample(a, x, &ta) == PETREL_OK, "sample: %s", petrel_last_error());
                CHECK(petrel_sampler_sample_top(b, ids, vals, n, &tb) == PETREL_OK, "sample_top: %s",
                      petrel_last_error());
                CHECK(ta == tb, "set %zu, vocab %d, draw %d: whole row %d, candidates %d", si, (int)V, d, (int)ta,
                      (int)tb);
            }
            petrel_sampler_free(a);
            petrel_sampler_free(b);
        }
    }
    /* parameters that need the whole row, and bad candidates */
    petrel_sampler_params sp = base;
    sp.repeat_penalty = 1.1f;
    petrel_sampler_t *s = NULL;
    if (petrel_sampler_new(&s, 10, &sp) == PETREL_OK) {
        int32_t ids[2] = {1, 2}, tok;
        float vals[2] = {1.0f, 0.5f};
        CHECK(!petrel_sampler_takes_top(s), "a penalty needs the row");
        CHECK(petrel_sampler_sample_top(s, ids, vals, 2, &tok) == PETREL_ERR_INVALID_ARG, "sample_top with a penalty");
        petrel_sampler_free(s);
    }
    if (petrel_sampler_new(&s, 10, &base) == PETREL_OK) {
        int32_t ids[2] = {1, 2}, bad[2] = {1, 10}, tok;
        float up[2] = {0.5f, 1.0f}, ok[2] = {1.0f, 0.5f};
        CHECK(petrel_sampler_sample_top(s, ids, up, 2, &tok) == PETREL_ERR_INVALID_ARG, "candidates out of order");
        CHECK(petrel_sampler_sample_top(s, bad, ok, 2, &tok) == PETREL_ERR_INVALID_ARG, "candidate out of range");
        CHECK(petrel_sampler_sample_top(s, ids, ok, 0, &tok) == PETREL_ERR_INVALID_ARG, "no candidates");
        petrel_sampler_free(s);
    }
}

static void check_program(const char *backend) {
    const char *label = backend ? "split with loopback" : "cpu";
    int64_t vocab;
    petrel_program_t *p = prompt_load(backend, label, &vocab);
    if (!p) return;
    enum { L = 4 };
    int32_t got[L][PETREL_TOPK_MAX], n[L], k = 1 + rand() % PETREL_TOPK_MAX;
    float vals[L][PETREL_TOPK_MAX], t = 0.9f;
    CHECK(petrel_program_output_topk(p, 0, 0, k, t, got[0], vals[0], &n[0]) == PETREL_ERR_STATE, "%s: before execute",
          label);
    prompt_run(p, label, vocab, L);
    for (int r = 0; r < L; r++) /* the device's answers first: reading the logits downloads them */
        CHECK(!petrel_program_output_topk(p, 0, r, k, t, got[r], vals[r], &n[r]), "%s: topk row %d: %s", label, r,
              petrel_program_error(p));
    CHECK(petrel_program_output_topk(p, 0, 0, 0, t, got[0], vals[0], &n[0]) == PETREL_ERR_INVALID_ARG, "%s: k 0", label);
    CHECK(petrel_program_output_topk(p, 0, 0, PETREL_TOPK_MAX + 1, t, got[0], vals[0], &n[0]) == PETREL_ERR_INVALID_ARG,
          "%s: k too large", label);
    CHECK(petrel_program_output_topk(p, 0, 0, k, 0.0f, got[0], vals[0], &n[0]) == PETREL_ERR_INVALID_ARG,
          "%s: temperature 0", label);
    CHECK(petrel_program_output_topk(p, 0, L, k, t, got[0], vals[0], &n[0]) == PETREL_ERR_INVALID_ARG,
          "%s: row past the end", label);
    petrel_tensor_desc o;
    static ref_cand ref[4096];
    if (petrel_program_get_output(&o, p, 0, NULL) != PETREL_OK || o.dtype != PETREL_DTYPE_F32 || vocab > 4096) {
        CHECK(0, "%s: logits", label);
    } else {
        for (int r = 0; r < L; r++) {
            int32_t m = ref_sort((const float *)o.data + r * vocab, (int32_t)vocab, t, ref);
            CHECK(n[r] == (m < k ? m : k), "%s: row %d: %d candidates", label, r, (int)n[r]);
            for (int32_t i = 0; i < n[r] && i < m; i++)
                CHECK(got[r][i] == ref[i].id && vals[r][i] == ref[i].v, "%s: row %d candidate %d: %d, want %d", label,
                      r, (int)i, (int)got[r][i], (int)ref[i].id);
        }
    }
    petrel_program_free(p);
}

int main(int argc, char **argv) {
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    if (argc > 1 && !strcmp(argv[1], "--cuda")) { /* the GPU suite: the real device's top-k */
        check_program("cuda");
        printf("test_topk --cuda: %s (seed %u)\n", failures ? "FAIL" : "ok", seed);
        return failures ? 1 : 0;
    }
    check_topk_row();
    check_sampler();
    check_program(NULL);
    pt_device_use_loopback();
    check_program("cuda");
    printf("test_topk: %s (seed %u)\n", failures ? "FAIL" : "ok", seed);
    return failures ? 1 : 0;
}
