/*
** step_gap.c -- where a greedy decode step's time goes between the device
** and the host, for an exported LM (python/petrel_export.py), through the
** public API only:
**
**   back to back   N decode steps enqueued without reading anything (the
**                  device runs them one after another; one wait at the
**                  end): the device's time per step
**   with argmax    the same steps, each followed by reading its argmax
**                  (the runner's loop: the device waits for the host
**                  between steps)
**
** The difference is the host's turn per token (argmax, its copy, the
** wait's wake-up, the input uploads, the launch).  Steps run at one
** position of a prefilled cache, so every step has the same work.
**
** build: cc -O2 -Iinclude tests/gpu/step_gap.c -Lbuild-cuda -lpetrel -o step_gap
** usage: step_gap MODEL.petrel [steps=256] [reps=5]
*/
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "petrel.h"
#include "petrel_llm.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int fail(const char *what, const char *msg) {
    fprintf(stderr, "step_gap: %s: %s\n", what, msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return fail("usage", "step_gap MODEL.petrel [steps] [reps]");
    int steps = argc > 2 ? atoi(argv[2]) : 256, reps = argc > 3 ? atoi(argv[3]) : 5;
    if (steps < 1 || reps < 1 || reps > 100) return fail("usage", "steps >= 1, reps 1..100");
    petrel_llm_opts lo = petrel_llm_default_opts();
    lo.backend = "cuda";
    lo.sampling.temperature = 0;
    petrel_llm_t *llm = NULL;
    if (petrel_llm_load(&llm, argv[1], &lo) != PETREL_OK) return fail("load", petrel_last_error());
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    /* a 128-token prompt fills the cache's first positions; the steps run at 128 */
    int32_t ids[128];
    uint64_t s = 1;
    for (int i = 0; i < 128; i++) ids[i] = (int32_t)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 33) %
                                           info.vocab_size;
    petrel_llm_gen_params gp = petrel_llm_gen_default_params();
    gp.max_new_tokens = 8;
    gp.ignore_eos = true;
    if (petrel_llm_generate(llm, ids, 128, &gp, NULL) != PETREL_OK) return fail("generate", petrel_llm_error(llm));
    petrel_program_t *p = petrel_llm_program(llm);
    int in_ids = petrel_program_find_input(p, "input_ids"), in_pos = petrel_program_find_input(p, "cache_position");
    if (in_ids < 0 || in_pos < 0) return fail("program", "no input_ids / cache_position input");
    int64_t tok = 1, pos = 128;
    petrel_tensor_desc ti = {.dtype = PETREL_DTYPE_I64, .rank = 2, .shape = {1, 1}, .data = &tok};
    petrel_tensor_desc tp = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {1}, .data = &pos};
    double *t[2];
    t[0] = calloc((size_t)reps, sizeof(double)), t[1] = calloc((size_t)reps, sizeof(double));
    if (!t[0] || !t[1]) return fail("memory", "out of memory");
    for (int r = -1; r < reps; r++) /* rep -1: warm-up */
        for (int mode = 0; mode < 2; mode++) {
            double t0 = now_s();
            for (int i = 0; i < steps; i++) {
                if (petrel_program_set_input(p, in_ids, &ti) != PETREL_OK ||
                    petrel_program_set_input(p, in_pos, &tp) != PETREL_OK || petrel_program_execute(p) != PETREL_OK)
                    return fail("execute", petrel_program_error(p));
                if (mode == 1 || i == steps - 1) {
                    int64_t a;
                    if (petrel_program_output_argmax(p, 0, -1, &a) != PETREL_OK)
                        return fail("argmax", petrel_program_error(p));
                    tok = a;
                }
            }
            if (r >= 0) t[mode][r] = (now_s() - t0) / steps;
        }
    qsort(t[0], (size_t)reps, sizeof(double), cmp);
    qsort(t[1], (size_t)reps, sizeof(double), cmp);
    double b = t[0][reps / 2], w = t[1][reps / 2];
    printf("step_gap: %d steps at position 128, median of %d: back to back %.1f us/step (%.1f steps/s), "
           "with argmax %.1f us/step (%.1f tok/s): host turn %.1f us/token\n",
           steps, reps, b * 1e6, 1.0 / b, w * 1e6, 1.0 / w, (w - b) * 1e6);
    free(t[0]);
    free(t[1]);
    petrel_llm_free(llm);
    return 0;
}
