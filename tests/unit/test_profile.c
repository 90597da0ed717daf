/*
** test_profile.c -- petrel_program_set_profiling / petrel_program_profile on
** the tiny Llama fixture, all on the CPU and split between the CPU and the
** loopback test device (runtime/loopback.c): a profiled run computes the
** same logits as a plain one, every node is counted once per execute with a
** finite, non-negative time, device nodes are named by their backend, a
** profiled steady-state execute allocates nothing, and turning profiling
** off stops the counting.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/core.h"
#include "runtime/device.h"

#define PROMPT 5

/* Run n tokens at position pos; copies the last row of logits into out
 * (vocab floats) when out is not NULL. */
static petrel_status step(petrel_program_t *p, const int64_t *ids, int32_t n, int64_t pos, float *out, int64_t vocab) {
    int64_t cpos[PROMPT];
    for (int32_t i = 0; i < n; i++) cpos[i] = pos + i;
    petrel_tensor_desc ti = {.dtype = PETREL_DTYPE_I64, .rank = 2, .shape = {1, n}, .data = (void *)ids};
    petrel_tensor_desc tp = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {n}, .data = cpos};
    petrel_status st;
    if ((st = petrel_program_set_input(p, petrel_program_find_input(p, "input_ids"), &ti)) ||
        (st = petrel_program_set_input(p, petrel_program_find_input(p, "cache_position"), &tp)) ||
        (st = petrel_program_execute(p)))
        return st;
    if (!out) return PETREL_OK;
    petrel_tensor_desc o;
    if ((st = petrel_program_get_output(&o, p, 0, NULL))) return st;
    if (o.dtype != PETREL_DTYPE_F32 || o.rank != 3 || o.shape[2] != vocab) return PETREL_ERR_RUNTIME;
    memcpy(out, (const float *)o.data + (o.shape[1] - 1) * vocab, (size_t)vocab * sizeof *out);
    return PETREL_OK;
}

static void check_backend(const char *backend) {
    const char *label = backend ? "split with loopback" : "cpu";
    petrel_program_t *p = NULL;
    petrel_load_opts lo = {.backend = backend};
    petrel_status st = petrel_program_load(&p, "tests/fixtures/llm/llama.pt2", &lo);
    CHECK(st == PETREL_OK, "%s: load: %s", label, petrel_last_error());
    if (st) return;
    petrel_io_info io;
    petrel_program_output_info(&io, p, 0);
    int64_t vocab = io.shape[2];
    float *plain = malloc((size_t)vocab * sizeof *plain), *prof = malloc((size_t)vocab * sizeof *prof);
    int nn = petrel_program_profile(p, NULL, 0);
    CHECK(plain && prof && vocab > 0, "%s: setup", label);
    CHECK(nn == 0, "%s: a profile before profiling was turned on (%d nodes)", label, nn);
    /* random prompt ids: fresh each run of the test */
    int64_t ids[PROMPT], next[1];
    srand((unsigned)time(NULL));
    for (int i = 0; i < PROMPT; i++) ids[i] = rand() % vocab;
    next[0] = rand() % vocab;

    /* plain: prompt, then two decode steps */
    CHECK(!step(p, ids, PROMPT, 0, NULL, vocab) && !step(p, next, 1, PROMPT, NULL, vocab) &&
              !step(p, next, 1, PROMPT + 1, plain, vocab),
          "%s: plain run: %s", label, petrel_program_error(p));
    /* profiled: the same calls from a fresh cache */
    CHECK(!petrel_program_reset_state(p) && !petrel_program_set_profiling(p, true), "%s: profiling on", label);
    nn = petrel_program_profile(p, NULL, 0);
    petrel_profile_entry *e = calloc((size_t)(nn > 0 ? nn : 1), sizeof *e);
    CHECK(nn > 0 && e, "%s: %d nodes to profile", label, nn);
    if (!e) nn = 0;
    CHECK(!step(p, ids, PROMPT, 0, NULL, vocab) && !step(p, next, 1, PROMPT, NULL, vocab), "%s: profiled run: %s",
          label, petrel_program_error(p));
    pt_alloc_fail_at(0);
    CHECK(!step(p, next, 1, PROMPT + 1, NULL, vocab), "%s: profiled run: %s", label, petrel_program_error(p));
    int64_t allocs = pt_alloc_fail_at(0);
    CHECK(allocs == 0, "%s: a profiled steady-state execute made %lld allocations", label, (long long)allocs);
    petrel_tensor_desc o;
    st = petrel_program_get_output(&o, p, 0, NULL);
    CHECK(!st, "%s: output", label);
    if (!st) memcpy(prof, (const float *)o.data + (o.shape[1] - 1) * vocab, (size_t)vocab * sizeof *prof);
    int same = 0;
    for (int64_t v = 0; !st && v < vocab; v++) same += prof[v] == plain[v] && isfinite(plain[v]);
    CHECK(same == vocab, "%s: profiled logits differ from the plain run's at %lld of %lld places", label,
          (long long)(vocab - same), (long long)vocab);
    nn = petrel_program_profile(p, e, nn);

    double total = 0;
    int on_dev = 0, on_cpu = 0, bad = 0;
    for (int i = 0; i < nn; i++) {
        if (e[i].calls != 3 || !(e[i].ms >= 0) || !isfinite(e[i].ms) || !e[i].op || !e[i].node) bad++;
        total += e[i].ms;
        if (!strcmp(e[i].backend, "loopback")) on_dev++;
        else if (!strcmp(e[i].backend, "cpu")) on_cpu++;
        else bad++;
    }
    CHECK(nn > 0 && bad == 0, "%s: %d of %d profile entries are wrong (want 3 calls, a finite time >= 0)", label, bad,
          nn);
    CHECK(total > 0, "%s: the profile's total time is %g ms", label, total);
    CHECK(backend ? on_dev > 0 && on_cpu > 0 : on_dev == 0, "%s: %d nodes on the device, %d on the cpu", label, on_dev,
          on_cpu);

    /* off: runs go on, counts stay */
    CHECK(!petrel_program_set_profiling(p, false), "%s: profiling off", label);
    CHECK(!step(p, next, 1, PROMPT + 2, NULL, vocab), "%s: run after profiling: %s", label, petrel_program_error(p));
    petrel_program_profile(p, e, nn);
    CHECK(nn > 0 && e[0].calls == 3, "%s: profiling off still counts (%lld calls)", label,
          nn > 0 ? (long long)e[0].calls : -1LL);
    free(plain);
    free(prof);
    free(e);
    petrel_program_free(p);
}

int main(void) {
    check_backend(NULL);
    pt_device_use_loopback();
    check_backend("cuda");
    printf("test_profile: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
