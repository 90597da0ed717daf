/*
** argmax_k.h -- the launcher of the device argmax (argmax_k.cu) behind the
** executor's output argmax (greedy decoding reads one index instead of the
** logits).  Plain C.
*/
#ifndef PETREL_CUDA_ARGMAX_K_H
#define PETREL_CUDA_ARGMAX_K_H

#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* *out (device) = index of the largest of x[0], x[stride], ... x[(n-1) *
 * stride] (f32 / f16 / bf16, n < 2^32): lowest index on ties, NaN
 * ignored, -1 when all are NaN.  work: 8 bytes of device memory. */
cudaError_t pcu_argmax_launch(cudaStream_t s, int32_t dtype, const void *x, int64_t stride, int64_t n, int64_t *out,
                              void *work);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_ARGMAX_K_H */
