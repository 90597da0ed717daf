/*
** bench_util.h -- what the standalone GPU benchmarks in tests/gpu/ share:
** the CUDA error check, the failure flag, bf16 on the host and a seeded
** generator (deterministic runs).
*/
#ifndef PETREL_TESTS_GPU_BENCH_UTIL_H
#define PETREL_TESTS_GPU_BENCH_UTIL_H

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#define CK(call)                                                                                          \
    do {                                                                                                  \
        cudaError_t e_ = (call);                                                                          \
        if (e_ != cudaSuccess) {                                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));        \
            exit(2);                                                                                      \
        }                                                                                                 \
    } while (0)

static int g_fail = 0; /* set by a failed check: exit status 1 */

static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}
static float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t g_rng = 12345u;
static uint32_t urand(void) { /* 24 random bits */
    g_rng = g_rng * 1664525u + 1013904223u;
    return g_rng >> 8;
}

/* Per-launch time in microseconds of enqueue(i) for i = 0 .. reps - 1,
 * captured in one CUDA graph (timed on its second replay). */
template <class F> static double graph_us(cudaStream_t s, int reps, F enqueue) {
    CK(enqueue(0));
    CK(cudaStreamSynchronize(s));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < reps; i++) CK(enqueue(i));
    CK(cudaStreamEndCapture(s, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, s));
    CK(cudaStreamSynchronize(s));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, s));
    CK(cudaGraphLaunch(exec, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return 1e3 * ms / reps;
}

#endif /* PETREL_TESTS_GPU_BENCH_UTIL_H */
