/*
** trace_step.c -- the runner's greedy loop as a shared library, for
** tests/gpu/trace_step.py, which runs it under a CUDA activity tracer
** (torch.profiler) to time every kernel of the real decode step (inside
** its CUDA graph, programmatic dependent launches and all) and the gaps
** between them.  tests/gpu/step_timeline.c drives the same loop.  Public
** API only.
**
** build: cc -O2 -shared -fPIC -Iinclude tests/gpu/trace_step.c -Lbuild-cuda -lpetrel -o trace_step.so
*/
#include <stdio.h>

#include "petrel.h"
#include "petrel_llm.h"

static petrel_llm_t *llm;
static int32_t ids[128];

/* Load MODEL on cuda, make a 128-token prompt; 0 or -1 (message on stderr). */
int trace_load(const char *model) {
    petrel_llm_opts lo = petrel_llm_default_opts();
    lo.backend = "cuda";
    lo.sampling.temperature = 0;
    if (petrel_llm_load(&llm, model, &lo) != PETREL_OK) {
        fprintf(stderr, "trace_step: %s\n", petrel_last_error());
        return -1;
    }
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    unsigned long long s = 1;
    for (int i = 0; i < 128; i++)
        ids[i] = (int32_t)(((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 33) %
                           (unsigned long long)info.vocab_size);
    return 0;
}

/* A fresh session: the prompt, then n greedy tokens; 0 or -1. */
int trace_generate(int n) {
    petrel_llm_gen_params gp = petrel_llm_gen_default_params();
    gp.max_new_tokens = n;
    gp.ignore_eos = true;
    if (petrel_llm_reset(llm) != PETREL_OK || petrel_llm_generate(llm, ids, 128, &gp, NULL) != PETREL_OK) {
        fprintf(stderr, "trace_step: %s\n", petrel_llm_error(llm));
        return -1;
    }
    return 0;
}
