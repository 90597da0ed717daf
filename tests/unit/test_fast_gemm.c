/*
** test_fast_gemm.c -- the CPU products of f32 rows with f32, bf16 or f16
** weight rows (backends/cpu/fast/gemm.c), white-box, on
** each of their paths (AVX-512 and AVX2 when the CPU has them, and the
** portable loop),
** against the same product computed here in double from the weights'
** exact values (bf16 and f16 decoded from their bits here).  Shapes with
** K and N that are and are not multiples of the vector width and of the
** four rows read together, decode (M = 1) and prefill rows (M taking the
** 4-, 2- and 1-row paths, across the 32-row blocks), padded leading
** dimensions.  Seeded random inputs; every result within 8 K 2^-24 of the
** sum of |x w| (float accumulation) and the relative L2 error of each case
** below 1e-6; NaN fails.  A product of several rows equals, to the bit,
** the products of its rows one at a time (however a prefill is blocked).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/fast/fast.h"

#include "check.h"
#include "rng_util.h"

/* IEEE half -> double, written out (normal, subnormal, zero; no inf/NaN drawn). */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m / 1024.0, -14);
    return (h & 0x8000) ? -v : v;
}
static double bf16_value(uint16_t h) {
    int e = (h >> 7) & 255, m = h & 127;
    double v = e ? ldexp(1.0 + m / 128.0, e - 127) : ldexp(m / 128.0, -126);
    return (h & 0x8000) ? -v : v;
}

/* A random finite weight in [-2, 2): bf16 of a random float, or an f16 of
 * random exponent (subnormals included) and mantissa. */
static uint16_t random_weight(bool bf16) {
    if (bf16) {
        float f = (float)rng_uniform(-2.0, 2.0);
        uint32_t u;
        memcpy(&u, &f, 4);
        return (uint16_t)(u >> 16); /* truncated: still a bf16 value */
    }
    uint16_t sign = (uint16_t)((rng_next() & 1) << 15), e = (uint16_t)(rng_next() % 16),
             m = (uint16_t)(rng_next() % 1024);
    return (uint16_t)(sign | e << 10 | m); /* exponents 0..15: |w| < 2 */
}

enum { W_F32, W_BF16, W_F16 };
static const char *kind_name[] = {"f32", "bf16", "f16"};

/* out = alpha * a @ W^T with the kernel of weight kind `kind`; b holds
 * uint16 weights, bf holds f32 ones. */
enum { PORTABLE, AVX2, AVX512 }; /* the paths: the widest the CPU has up to this one */
static const char *path_name[] = {"portable", "avx2", "avx512"};

static void product(int kind, int path, int64_t M, int64_t N, int64_t K, const float *a, int64_t lda,
                    const uint16_t *b, const float *bf, int64_t ldb, float *out, int64_t ldo, float alpha) {
    cpu_fast_gemm_half_simd(path > PORTABLE);
    cpu_fast_gemm_f32_simd(path > PORTABLE);
    cpu_fast_gemm_avx512(path == AVX512);
    if (kind == W_F32) cpu_fast_gemm_nt_f32(M, N, K, a, lda, bf, ldb, out, ldo, alpha);
    else cpu_fast_gemm_nt_half(M, N, K, a, lda, b, ldb, kind == W_BF16, out, ldo, alpha);
    cpu_fast_gemm_half_simd(true);
    cpu_fast_gemm_f32_simd(true);
    cpu_fast_gemm_avx512(true);
}

static void run_case(int64_t M, int64_t N, int64_t K, int64_t pad, int kind, int path) {
    int64_t lda = K + pad, ldb = K + pad, ldo = N + pad;
    bool bf16 = kind == W_BF16;
    float *a = malloc(sizeof(float) * (size_t)(M * lda));
    uint16_t *b = malloc(sizeof(uint16_t) * (size_t)(N * ldb));
    float *bf = malloc(sizeof(float) * (size_t)(N * ldb));
    float *out = malloc(sizeof(float) * (size_t)(M * ldo));
    if (!a || !b || !bf || !out) {
        CHECK(0, "out of memory");
        free(a), free(b), free(bf), free(out);
        return;
    }
    for (int64_t i = 0; i < M * lda; i++) a[i] = (float)rng_uniform(-1.5, 1.5);
    for (int64_t i = 0; i < N * ldb; i++) b[i] = random_weight(bf16), bf[i] = (float)rng_uniform(-2.0, 2.0);
    for (int64_t i = 0; i < M * ldo; i++) out[i] = NAN; /* every result must be written */
    const float alpha = 0.75f;
    product(kind, path, M, N, K, a, lda, b, bf, ldb, out, ldo, alpha);
    double err2 = 0, ref2 = 0;
    int bad = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                double w = kind == W_F32 ? bf[j * ldb + k]
                           : bf16         ? bf16_value(b[j * ldb + k])
                                          : f16_value(b[j * ldb + k]);
                ref += (double)a[i * lda + k] * w, mag += fabs((double)a[i * lda + k] * w);
            }
            ref *= alpha, mag *= alpha;
            double got = out[i * ldo + j], d = got - ref;
            if (!(fabs(d) <= 8.0 * (double)K * ldexp(1.0, -24) * mag + 1e-30)) bad++;
            err2 += d * d, ref2 += ref * ref;
        }
    /* the same results to the bit row by row (decode's path): no result
     * depends on how the rows were blocked */
    int differ = 0;
    float *one = malloc(sizeof(float) * (size_t)ldo);
    for (int64_t i = 0; one && M > 1 && i < M; i++) {
        product(kind, path, 1, N, K, a + i * lda, lda, b, bf, ldb, one, ldo, alpha);
        differ += memcmp(one, out + i * ldo, sizeof(float) * (size_t)N) != 0;
    }
    free(one);
    CHECK(differ == 0, "%s %s M %lld: %d rows differ from the same row alone", kind_name[kind], path_name[path],
          (long long)M, differ);
    double rel = sqrt(err2 / (ref2 > 0 ? ref2 : 1));
    CHECK(bad == 0 && rel < 1e-6, "%s %s M %lld N %lld K %lld pad %lld: %d results out of bound, rel L2 %.3g",
          kind_name[kind], path_name[path], (long long)M, (long long)N, (long long)K, (long long)pad,
          bad, rel);
    free(a), free(b), free(bf), free(out);
}

int main(void) {
    rng_state = 0x2545f4914f6cdd1dull;
    static const int64_t shapes[][4] = {
        {1, 1, 1, 0},   {1, 37, 1003, 0}, {1, 64, 2048, 0}, {3, 64, 2048, 5},
        {5, 6, 7, 1},   {2, 9, 8, 3},     {4, 130, 515, 2}, {1, 4, 16, 0},
        {1, 9, 40, 0},  {3, 5, 33, 1},    {6, 11, 1024, 0}, {9, 13, 100, 1},
        {37, 8, 64, 0},
    };
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int kind = 0; kind < 3; kind++)
            for (int path = PORTABLE; path <= AVX512; path++, n++)
                run_case(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], kind, path);
    printf("test_fast_gemm: %d cases, %d failures\n", n, failures);
    return failures ? 1 : 0;
}
