/*
** fast.h -- optimized CPU variants, used by the reference kernels when
** their operands allow it (R13: the reference loops stay; these are tested
** against them).  Part of the CPU backend.
*/
#ifndef PETREL_CPU_FAST_H
#define PETREL_CPU_FAST_H

#include <stdint.h>

#include "../../../core/core.h"

/* out[i*ldo + j] = alpha * sum_k a[i*lda + k] * b[j*ldb + k]  (+ out[..]
 * when accumulate), for i < M, j < N: both operands contiguous along k,
 * as in `x @ W^T` with W (N, K) row-major.  Float accumulation, like
 * torch's CPU matmul; AVX2+FMA when the CPU has it. */
PT_HIDDEN void cpu_fast_gemm_nt_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda,
                                    const float *b, int64_t ldb, float *out, int64_t ldo, float alpha);

#endif /* PETREL_CPU_FAST_H */
