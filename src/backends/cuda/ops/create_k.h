/*
** create_k.h -- launcher of the CUDA arange kernel (create_k.cu), called by
** create.c.  Plain C.
*/
#ifndef PETREL_CUDA_CREATE_K_H
#define PETREL_CUDA_CREATE_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] = start + i * step for i < n, stored in dtype (petrel_dtype):
 * computed in double (fstart, fstep) when `fl`, else in wrapping int64
 * (istart, istep). */
cudaError_t pcu_launch_arange(void *dst, int dtype, int64_t n, bool fl, double fstart, double fstep,
                          int64_t istart, int64_t istep, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_CREATE_K_H */
