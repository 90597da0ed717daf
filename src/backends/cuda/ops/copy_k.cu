/*
** copy_k.cu -- CUDA kernels of the copy family (copy.c) and of fills
** (copy.c, create.c): strided raw copies, dtype conversions (vectorized for
** dense f32/f16/bf16 pairs) and pattern fills.
*/
#include "copy_k.h"
#include "ew_k.cuh"

/* Raw copy of one U-sized element: same dtype, any strides. */
template <class U> struct cp_raw_body {
    template <class IT> PCU_HD void operator()(const pcu_ew &it, IT i) const {
        ew_offs<1, IT> o = ew_offsets<1>(it, i);
        ((U *)it.out)[o.out] = ((const U *)it.in[0].data)[o.in[0]];
    }
};

/* Converting copy through CT: double when either side is a float dtype,
 * int64 otherwise, as the CPU's pt_copy_into. */
template <class CT> struct cp_convert_body {
    template <class IT> PCU_HD void operator()(const pcu_ew &it, IT i) const {
        ew_offs<1, IT> o = ew_offsets<1>(it, i);
        ew_st<CT>(it.out, it.out_dtype, o.out, ew_ld<CT>(it.in[0].data, it.in[0].dtype, o.in[0]));
    }
};

struct cp_identity {
    PCU_HD float operator()(float x) const { return x; }
};

static bool cp_is_float32(int dt) {
    return dt == PETREL_DTYPE_F32 || dt == PETREL_DTYPE_F16 || dt == PETREL_DTYPE_BF16;
}

/* Dense conversion between two of f32/f16/bf16: through float, which is
 * exact for the source and rounds once for the destination. */
template <class TI> static bool cp_try_vec_from(const pcu_ew *it, cudaStream_t s, cudaError_t *err) {
    cp_identity f;
    if (ew_vec_fits<TI, float, 1>(it)) *err = ew_vec_launch<TI, float, 1>(it, f, s);
    else if (ew_vec_fits<TI, __half, 1>(it)) *err = ew_vec_launch<TI, __half, 1>(it, f, s);
    else if (ew_vec_fits<TI, __nv_bfloat16, 1>(it)) *err = ew_vec_launch<TI, __nv_bfloat16, 1>(it, f, s);
    else return false;
    return true;
}

static size_t cp_elsize(int dt) {
    switch (dt) {
    case PETREL_DTYPE_F64:
    case PETREL_DTYPE_I64: return 8;
    case PETREL_DTYPE_F32:
    case PETREL_DTYPE_I32: return 4;
    case PETREL_DTYPE_F16:
    case PETREL_DTYPE_BF16:
    case PETREL_DTYPE_I16: return 2;
    default: return 1;
    }
}

extern "C" cudaError_t pcu_launch_copy(const pcu_ew *it, cudaStream_t s) {
    int sdt = it->in[0].dtype, ddt = it->out_dtype;
    if (sdt == ddt) {
        switch (cp_elsize(sdt)) {
        case 8: return ew_launch(it, cp_raw_body<uint64_t>{}, s);
        case 4: return ew_launch(it, cp_raw_body<uint32_t>{}, s);
        case 2: return ew_launch(it, cp_raw_body<uint16_t>{}, s);
        default: return ew_launch(it, cp_raw_body<uint8_t>{}, s);
        }
    }
    if (cp_is_float32(sdt) && cp_is_float32(ddt) && it->numel > 0) {
        cudaError_t err;
        bool done = sdt == PETREL_DTYPE_F32   ? cp_try_vec_from<float>(it, s, &err)
                    : sdt == PETREL_DTYPE_F16 ? cp_try_vec_from<__half>(it, s, &err)
                                              : cp_try_vec_from<__nv_bfloat16>(it, s, &err);
        if (done) return err;
    }
    bool fl = cp_is_float32(sdt) || cp_is_float32(ddt) || sdt == PETREL_DTYPE_F64 || ddt == PETREL_DTYPE_F64;
    if (fl) return ew_launch(it, cp_convert_body<double>{}, s);
    return ew_launch(it, cp_convert_body<int64_t>{}, s);
}

/* ---- fill ----------------------------------------------------------------- */

template <class U> __global__ void __launch_bounds__(EW_THREADS) cp_fill(U *dst, int64_t n, U v) {
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) dst[i] = v;
}

extern "C" cudaError_t pcu_launch_fill(void *dst, int64_t n, int elsize, uint64_t bits, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    /* one repeated byte (zeros, bools, bytes): a memset */
    uint64_t byte = bits & 0xff;
    uint64_t mask = elsize >= 8 ? ~(uint64_t)0 : (((uint64_t)1 << (8 * elsize)) - 1);
    if ((bits & mask) == ((byte * 0x0101010101010101ull) & mask))
        return cudaMemsetAsync(dst, (int)byte, (size_t)n * (size_t)elsize, s);
    unsigned blocks = ew_blocks(n);
    switch (elsize) {
    case 8: cp_fill<uint64_t><<<blocks, EW_THREADS, 0, s>>>((uint64_t *)dst, n, bits); break;
    case 4: cp_fill<uint32_t><<<blocks, EW_THREADS, 0, s>>>((uint32_t *)dst, n, (uint32_t)bits); break;
    case 2: cp_fill<uint16_t><<<blocks, EW_THREADS, 0, s>>>((uint16_t *)dst, n, (uint16_t)bits); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
