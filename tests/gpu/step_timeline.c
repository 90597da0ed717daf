/*
** step_timeline.c -- when each block of the decode step's ring GEMVs and
** attentions starts, passes its dependent-launch wait and ends, inside the
** runner's real greedy loop (CUDA graph, programmatic dependent launches
** and all).  Needs a library built with -DPCU_STEP_TRACE (dense_k.cuh);
** writes one line per block: grid kind block smid t0 t1 t2 t3 t4 t5 (ns,
** global timer; dense_k.cuh's pcu_st_rec), for tests/gpu/step_timeline.py.
**
** build: a library with the trace compiled in, then this against it:
**   make BUILD=build-trace CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_FLAGS=-DPCU_STEP_TRACE"
**   cc -O2 -Iinclude tests/gpu/step_timeline.c -Lbuild-trace -lpetrel -ldl -o step_timeline
** usage: step_timeline MODEL.petrel TOKENS OUT.txt (the records of a fresh
** session's prompt and TOKENS greedy steps; about 100,000 per 8 steps of
** Llama-3.2-1B, the buffer holds 524,288 per kind)
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "petrel.h"
#include "petrel_llm.h"

typedef struct rec {
    unsigned long long grid, t[6];
    unsigned info, pad;
} rec;
typedef int (*take_fn)(void *out, int max);

#define MAXREC (1 << 19)

static int generate(petrel_llm_t *llm, const int32_t *ids, int n) {
    petrel_llm_gen_params gp = petrel_llm_gen_default_params();
    gp.max_new_tokens = n;
    gp.ignore_eos = true;
    if (petrel_llm_reset(llm) != PETREL_OK || petrel_llm_generate(llm, ids, 128, &gp, NULL) != PETREL_OK) {
        fprintf(stderr, "step_timeline: %s\n", petrel_llm_error(llm));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: step_timeline MODEL.petrel TOKENS OUT.txt\n");
        return 2;
    }
    take_fn take[2] = {(take_fn)dlsym(RTLD_DEFAULT, "pcu_st_take_quant"), (take_fn)dlsym(RTLD_DEFAULT, "pcu_st_take_attn")};
    if (!take[0] || !take[1]) {
        fprintf(stderr, "step_timeline: the library was not built with -DPCU_STEP_TRACE\n");
        return 1;
    }
    petrel_llm_t *llm;
    petrel_llm_opts lo = petrel_llm_default_opts();
    lo.backend = "cuda";
    lo.sampling.temperature = 0;
    if (petrel_llm_load(&llm, argv[1], &lo) != PETREL_OK) {
        fprintf(stderr, "step_timeline: %s\n", petrel_last_error());
        return 1;
    }
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    int32_t ids[128];
    unsigned long long s = 1;
    for (int i = 0; i < 128; i++)
        ids[i] = (int32_t)(((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 33) %
                           (unsigned long long)info.vocab_size);
    rec *r = malloc(sizeof(rec) * MAXREC);
    FILE *f = fopen(argv[3], "w");
    if (!r || !f || generate(llm, ids, 16) != 0) return 1;
    for (int k = 0; k < 2; k++) take[k](r, MAXREC); /* clear the warm-up's */
    if (generate(llm, ids, atoi(argv[2])) != 0) return 1;
    for (int k = 0; k < 2; k++) {
        int n = take[k](r, MAXREC);
        if (n < 0) return 1;
        for (int i = 0; i < n; i++)
            fprintf(f, "%llu %u %u %u %llu %llu %llu %llu %llu %llu\n", r[i].grid, r[i].info >> 24, r[i].info & 0xffffu,
                    (r[i].info >> 16) & 0xffu, r[i].t[0], r[i].t[1], r[i].t[2], r[i].t[3], r[i].t[4], r[i].t[5]);
    }
    fclose(f);
    petrel_llm_free(llm);
    return 0;
}
