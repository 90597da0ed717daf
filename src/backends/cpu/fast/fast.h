/*
** fast.h -- optimized CPU variants, used by the reference kernels when
** their operands allow it (R13: the reference loops stay; these are tested
** against them).  Part of the CPU backend.
*/
#ifndef PETREL_CPU_FAST_H
#define PETREL_CPU_FAST_H

#include <stdbool.h>
#include <stdint.h>

#include "../../../core/core.h"

/* out[i*ldo + j] = alpha * sum_k a[i*lda + k] * b[j*ldb + k]  (+ out[..]
 * when accumulate), for i < M, j < N: both operands contiguous along k,
 * as in `x @ W^T` with W (N, K) row-major.  Float accumulation, like
 * torch's CPU matmul (gemm.c); AVX2+FMA+F16C when the CPU has them. */
PT_HIDDEN void cpu_fast_gemm_nt_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda,
                                    const float *b, int64_t ldb, float *out, int64_t ldo, float alpha);

/* Test hook: false makes cpu_fast_gemm_nt_f32 take its portable loop
 * (process-wide; tests only). */
PT_HIDDEN void cpu_fast_gemm_f32_simd(bool on);

/* The same with b in bf16 (bf16 true) or f16, converted to float as it is
 * loaded (gemm.c); a stays f32.  AVX2+FMA+F16C when the CPU has them
 * (and cpu_fast_gemm_half_simd left them on). */
PT_HIDDEN void cpu_fast_gemm_nt_half(int64_t M, int64_t N, int64_t K, const float *a, int64_t lda,
                                     const uint16_t *b, int64_t ldb, bool bf16, float *out, int64_t ldo,
                                     float alpha);
/* Test hook: false makes cpu_fast_gemm_nt_half take its portable loop
 * (process-wide; tests only). */
PT_HIDDEN void cpu_fast_gemm_half_simd(bool on);
/* Test hook: false keeps both products off their AVX-512 loops (the AVX2
 * ones then run on a CPU that has both; process-wide; tests only). */
PT_HIDDEN void cpu_fast_gemm_avx512(bool on);

/* ---- quantized weights (qmm.c) ------------------------------------------ */

/* One quantized weight W (N, K) with groups of G along k, as ops.def
 * ("Quantized weights") and core/quant_fmt.h define it, as the CPU
 * kernels read it (ops/quant.c fills it from the node's tensors). */
typedef struct cpu_qweight {
    int fmt;               /* pt_qfmt */
    int64_t N, K, G;
    const uint8_t *codes;  /* (N, K * bits / 8): row n at codes + n * code_rs, its bytes adjacent */
    int64_t code_rs;
    const uint8_t *scales; /* (N, K / G) of dtype sdt (u8 E4M3 bits for nvfp4); strides in elements */
    petrel_dtype sdt;
    int64_t s_rs, s_cs;
    const int8_t *zeros;   /* (N, K / G) zero points of asymmetric formats; NULL otherwise */
    int64_t z_rs, z_cs;
    float t;               /* nvfp4's per-tensor scale (1 otherwise) */
} cpu_qweight;

/* Can cpu_fast_qmm compute w: an AVX-512 CPU, or one with AVX2, FMA and
 * F16C, a group size and K its blocks fit (int8: G % 16 == 0; 4-bit:
 * G % 32 == 0 or G == 16; 2-bit: G % 64 == 0 or G == 32), scales and
 * zeros contiguous along k?  False after cpu_fast_qmm_enable(false). */
PT_HIDDEN bool cpu_fast_qmm_ok(const cpu_qweight *w);
/* Test hook: false makes cpu_fast_qmm_ok refuse everything, so the
 * reference loops run (process-wide; tests only). */
PT_HIDDEN void cpu_fast_qmm_enable(bool on);
/* Test hook: false keeps cpu_fast_qmm off its AVX-512 loops (the AVX2
 * ones then run on a CPU that has both; process-wide; tests only). */
PT_HIDDEN void cpu_fast_qmm_avx512(bool on);
/* Floats of workspace cpu_fast_qmm needs for w and M rows of x. */
PT_HIDDEN int64_t cpu_fast_qmm_work(const cpu_qweight *w, int64_t M);
/* Reorder x (M, K) f32, in place, into the layout cpu_fast_qmm reads for
 * weights of format fmt (within each 16-byte block of codes, the values
 * one code position of every byte multiplies sit together). */
PT_HIDDEN void cpu_fast_qmm_prep(int fmt, int64_t M, int64_t K, float *x);
/* out[m * ldo + j] = sum_k x[m, k] * W[n0 + j, k] for m < M, j < nb, with
 * W dequantized in float exactly as ops.def says and float accumulation;
 * x as cpu_fast_qmm_prep left it.  M == 1 reads each code once and never
 * stores W; larger M dequantizes 16 rows at a time into `work` and runs
 * cpu_fast_gemm_nt_f32.  Only when cpu_fast_qmm_ok(w). */
PT_HIDDEN void cpu_fast_qmm(const cpu_qweight *w, int64_t n0, int64_t nb, int64_t M, const float *x, float *out,
                            int64_t ldo, float *work);

/* ---- attention (attn.c) -------------------------------------------------- */

/* For each row r < M of scores s (row r at s + r * lds; columns outside
 * [j0[r], j1[r]) are never read, and -inf marks an excluded column inside
 * it): out[r * ldo + e] = sum_j w_j v[j, e] / sum_j w_j over that range,
 * with w_j = exp(s_j - max s), for e < Ev; v's rows (f32, bf16 or f16) ldv
 * elements apart, contiguous along e.  Float accumulation; a row with
 * every column excluded, or an empty range, gives zeros; s is
 * overwritten.  AVX-512 when the CPU has it and Ev is a multiple of 16,
 * else AVX2 (with FMA and F16C) when the CPU has it and Ev is a multiple
 * of 8 (and cpu_fast_attn_simd left them on), else a portable loop. */
PT_HIDDEN void cpu_fast_softmax_pv(int64_t M, float *s, int64_t lds, const int32_t *j0, const int32_t *j1,
                                   const void *v, int64_t ldv, petrel_dtype vdt, int64_t Ev, float *out,
                                   int64_t ldo);
/* Test hook: false makes cpu_fast_softmax_pv take its portable loop
 * (process-wide; tests only). */
PT_HIDDEN void cpu_fast_attn_simd(bool on);
/* Test hook: false keeps cpu_fast_softmax_pv off its AVX-512 loops (the
 * AVX2 ones then run on a CPU that has both; process-wide; tests only). */
PT_HIDDEN void cpu_fast_attn_avx512(bool on);
/* Does the attention kernel take the float path?  False after
 * cpu_fast_attn_enable(false) (process-wide; tests only): the double
 * reference loops run. */
PT_HIDDEN bool cpu_fast_attn_enabled(void);
PT_HIDDEN void cpu_fast_attn_enable(bool on);

#endif /* PETREL_CPU_FAST_H */
