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
**   cc -O2 -Iinclude tests/gpu/step_timeline.c tests/gpu/trace_step.c -Lbuild-trace -lpetrel -ldl -o step_timeline
** (trace_step.c's loop: its 128-token prompt, then greedy tokens)
** usage: step_timeline MODEL.petrel TOKENS OUT.txt (the records of a fresh
** session's prompt and TOKENS greedy steps; about 100,000 per 8 steps of
** Llama-3.2-1B, the buffer holds 524,288 per kind)
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct rec {
    unsigned long long grid, t[6];
    unsigned info, pad;
} rec;
typedef int (*take_fn)(void *out, int max);

#define MAXREC (1 << 19)

/* tests/gpu/trace_step.c: load a model on cuda; a fresh session's prompt and n greedy tokens (0 or -1) */
int trace_load(const char *model);
int trace_generate(int n);

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
    if (trace_load(argv[1]) != 0) return 1;
    rec *r = malloc(sizeof(rec) * MAXREC);
    FILE *f = fopen(argv[3], "w");
    if (!r || !f) {
        fprintf(stderr, "step_timeline: cannot write %s\n", argv[3]);
        return 1;
    }
    if (trace_generate(16) != 0) return 1;
    for (int k = 0; k < 2; k++) take[k](r, MAXREC); /* clear the warm-up's */
    if (trace_generate(atoi(argv[2])) != 0) return 1;
    for (int k = 0; k < 2; k++) {
        int n = take[k](r, MAXREC);
        if (n < 0) return 1;
        for (int i = 0; i < n; i++)
            fprintf(f, "%llu %u %u %u %llu %llu %llu %llu %llu %llu\n", r[i].grid, r[i].info >> 24, r[i].info & 0xffffu,
                    (r[i].info >> 16) & 0xffu, r[i].t[0], r[i].t[1], r[i].t[2], r[i].t[3], r[i].t[4], r[i].t[5]);
    }
    return fclose(f) == 0 ? 0 : 1;
}
