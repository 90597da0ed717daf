/*
** create_k.cu -- CUDA kernel of the factory family (create.c): arange.
** Values as the CPU reference computes them (cpu/ops/create.c): start +
** i * step in double for float outputs, in wrapping int64 otherwise.
*/
#include "create_k.h"
#include "ew_k.cuh"

static __global__ void __launch_bounds__(EW_THREADS)
cr_arange(void *dst, int dtype, int64_t n, bool fl, double fs, double fst, int64_t is, int64_t ist) {
    dn_pdl_wait(); /* launched early, as the elementwise kernels (ew_run) */
    dn_pdl_release();
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        /* no fused multiply-add: the host computes the rounded product */
        if (fl) ew_st<double>(dst, dtype, i, __dadd_rn(fs, __dmul_rn(fst, (double)i)));
        else ew_st<int64_t>(dst, dtype, i, (int64_t)((uint64_t)is + (uint64_t)ist * (uint64_t)i));
    }
}

extern "C" cudaError_t pcu_launch_arange(void *dst, int dtype, int64_t n, bool fl, double fstart,
                                     double fstep, int64_t istart, int64_t istep, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    return dn_launch_pdl(cr_arange, dim3(ew_blocks(n)), dim3(EW_THREADS), 0, s, dst, dtype, n, fl, fstart, fstep, istart,
                         istep);
}
