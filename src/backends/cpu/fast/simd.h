/*
** simd.h -- vector helpers shared by the fast CPU kernels in this folder.
*/
#ifndef PETREL_CPU_FAST_SIMD_H
#define PETREL_CPU_FAST_SIMD_H

#include <immintrin.h>
#include <stdbool.h>

/* Does this CPU run the AVX2 loops (AVX2, FMA and F16C), the AVX-512 ones
 * (AVX-512F)?  Not cached in a static: threads call these. */
static inline bool fast_have_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
static inline bool fast_have_avx512(void) { return __builtin_cpu_supports("avx512f"); }

/* The sum of v's eight lanes: the halves added, then pairs. */
__attribute__((target("avx2,fma"))) static inline float fast_hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

#endif /* PETREL_CPU_FAST_SIMD_H */
