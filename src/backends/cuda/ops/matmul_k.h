/*
** matmul_k.h -- launchers of the "matmul" family's own device kernels
** (matmul_k.cu), called from matmul.c; everything else in that family is
** cuBLAS.  Plain C: every launcher enqueues on `s` and returns
** cudaGetLastError().
*/
#ifndef PETREL_CUDA_MATMUL_K_H
#define PETREL_CUDA_MATMUL_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out (M, N) = alpha * x (M, K) @ w (N, K)^T + beta * self, for few rows
 * (the decode case: M <= PCU_GEMV_MAX_M), streaming w once.
 * Requirements (checked by the caller): x, w, out share one float dtype;
 * rows of w are contiguous, K a multiple of 16 bytes' worth of elements,
 * w, x and their row strides 16-byte aligned; out is dense (M, N). */
#define PCU_GEMV_MAX_M 8
typedef struct pcu_gemv {
    int32_t dtype;           /* petrel_dtype of x, w, out */
    const void *w;           /* (N, K), row stride K */
    const void *x;           /* (M, K), row stride ldx */
    int64_t ldx;
    void *out;               /* (M, N) dense */
    int32_t M;
    int64_t N, K;
    float alpha, beta;
    const void *self;        /* NULL: no addend; else read at m*self_sm + n*self_sn */
    int32_t self_dtype;
    int64_t self_sm, self_sn;
} pcu_gemv;

cudaError_t pcu_gemv_launch(cudaStream_t s, const pcu_gemv *g, int sm_count);

/* data[i] *= beta for a dense float tensor of n elements (addmm with an
 * empty reduction: the result is beta * self). */
cudaError_t pcu_scale_launch(cudaStream_t s, int32_t dtype, void *data, int64_t n, float beta);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_MATMUL_K_H */
