/*
** membw.c -- DRAM read bandwidth of this machine, the divisor of the CPU
** decode floor in bench/cpu.sh: every thread (OpenMP, all cores by default)
** XORs its share of a buffer much larger than the caches; the best of 6
** passes counts (the first touch of the pages happens before timing).
**
**     cc -O3 -march=native -fopenmp bench/membw.c -o membw && ./membw [GB]
**
** Prints "read_bytes_s <bytes per second> threads <n> buffer <bytes>".
*/
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile uint64_t sink; /* keeps the reads from being optimized away */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    double gb = argc > 1 ? atof(argv[1]) : 2.0;
    size_t n = (size_t)(gb * 1e9) / sizeof(uint64_t) / 8 * 8;
    if (n == 0) {
        fprintf(stderr, "membw: buffer size must be > 0 GB\n");
        return 2;
    }
    uint64_t *a = aligned_alloc(64, n * sizeof *a);
    if (!a) {
        fprintf(stderr, "membw: cannot allocate %.2f GB\n", gb);
        return 1;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = i * 0x9E3779B97F4A7C15ull;
    double best = 0;
    for (int pass = 0; pass < 6; pass++) {
        uint64_t acc = 0;
        double t0 = now_s();
        /* eight independent XOR chains per thread: the compiler vectorizes
         * them, so the loop is bound by loads, not by a dependency chain */
#pragma omp parallel for schedule(static) reduction(^ : acc)
        for (size_t i = 0; i < n; i += 8)
            acc ^= a[i] ^ a[i + 1] ^ a[i + 2] ^ a[i + 3] ^ a[i + 4] ^ a[i + 5] ^ a[i + 6] ^ a[i + 7];
        double bw = (double)(n * sizeof *a) / (now_s() - t0);
        if (bw > best) best = bw;
        sink ^= acc;
    }
    printf("read_bytes_s %.0f threads %d buffer %zu\n", best, omp_get_max_threads(), n * sizeof *a);
    free(a);
    return 0;
}
