/*
** shape_k.cu -- device kernels of the "shape" family (cat, stack, repeat,
** repeat_interleave, tril/triu, roll, flip, padding, diff) behind the
** launchers of shape_k.h.  Every kernel walks the dense output (or one
** input, for cat) with a grid-stride loop and 64-bit positions.
*/
#include "data_k.cuh"
#include "shape_k.h"

namespace {

/* ---- cat ----------------------------------------------------------------- */

/* One input per blockIdx.y; U is the copy unit (all rows, offsets and
 * pointers are multiples of its size). */
template <typename U>
__global__ void cat_bytes_k(pcu_cat_bytes a) {
    int i = blockIdx.y;
    const int64_t w = sizeof(U);
    int64_t rowu = a.row[i] / w, total = a.outer * rowu;
    int64_t orow = a.out_row / w, at = a.at[i] / w;
    const U *src = (const U *)a.src[i];
    U *out = (U *)a.out;
    for (int64_t u = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; u < total;
         u += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = u / rowu;
        out[o * orow + at + (u - o * rowu)] = src[u];
    }
}

__global__ void cat_strided_k(pcu_cat_strided a) {
    int i = blockIdx.y;
    const pcu_tdesc &src = a.src[i];
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < a.numel[i];
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t rem = e, soff = 0, ooff = 0, ostep = 1;
        for (int d = a.rank - 1; d >= 0; d--) {
            int64_t q = rem / src.shape[d], c = rem - q * src.shape[d];
            rem = q;
            soff += c * src.stride[d];
            ooff += (d == a.dim ? c + a.at[i] : c) * ostep;
            ostep *= a.oshape[d];
        }
        dk_copy_elem(dk_at(a.out, a.odt, ooff), a.odt, dk_at(src.data, src.dtype, soff), src.dtype);
    }
}

/* ---- remap (repeat, repeat_interleave, tril/triu, roll, flip, pad) ------- */

/* Source coordinate of output coordinate c along one dim; false when a
 * constant-pad dim falls outside the source. */
__device__ __forceinline__ bool remap_coord(int mode, int64_t c, int64_t arg, int64_t size,
                                            int64_t *j) {
    switch (mode) {
    case PCU_MAP_ID: *j = c; return true;
    case PCU_MAP_MOD: *j = c % size; return true;
    case PCU_MAP_DIV: *j = c / arg; return true;
    case PCU_MAP_FLIP: *j = size - 1 - c; return true;
    case PCU_MAP_ROLL: *j = c >= arg ? c - arg : c - arg + size; return true;
    default: break;
    }
    int64_t k = c - arg;
    if (k >= 0 && k < size) {
        *j = k;
        return true;
    }
    switch (mode) {
    case PCU_MAP_REFLECT: *j = k < 0 ? -k : 2 * (size - 1) - k; return true;
    case PCU_MAP_REPLICATE: *j = k < 0 ? 0 : size - 1; return true;
    case PCU_MAP_CIRCULAR: *j = ((k % size) + size) % size; return true;
    default: *j = 0; return false; /* PCU_MAP_PAD */
    }
}

__global__ void remap_k(pcu_remap a) {
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < a.numel;
         o += (int64_t)gridDim.x * blockDim.x) {
        int64_t soff = 0;
        bool inside = true;
        if (a.flat) {
            int64_t lin = (o / a.flat_div + a.flat_mod - a.flat_shift) % a.flat_mod;
            soff = dk_offset(lin, a.src.rank, a.src.shape, a.src.stride);
        } else {
            int64_t rem = o, row = 0, col = 0;
            for (int d = a.rank - 1; d >= 0; d--) {
                int64_t q = rem / a.oshape[d], c = rem - q * a.oshape[d], j;
                rem = q;
                if (d == a.rank - 1) col = c;
                if (d == a.rank - 2) row = c;
                inside = remap_coord(a.mode[d], c, a.arg[d], a.src.shape[d], &j) && inside;
                soff += j * a.src.stride[d];
            }
            if (a.tri) inside = inside && (a.tri == 1 ? col - row <= a.tri_k : col - row >= a.tri_k);
        }
        char *dst = dk_at(a.out, a.odt, o);
        if (inside)
            dk_copy_elem(dst, a.odt, dk_at(a.src.data, a.src.dtype, soff), a.src.dtype);
        else
            dk_store_fill(dst, a.odt, a.fill_is_int, a.fill_i, a.fill_f);
    }
}

/* ---- diff ---------------------------------------------------------------- */

/* v rounded to float dtype dt (identity for f64). */
__device__ __forceinline__ double diff_round(double v, int dt) {
    switch (dt) {
    case PETREL_DTYPE_F32: return (double)(float)v;
    case PETREL_DTYPE_F16: return dk_f16_to_f32(dk_f32_to_f16((float)v));
    case PETREL_DTYPE_BF16: return dk_bf16_to_f32(dk_f32_to_bf16((float)v));
    default: return v;
    }
}

/* v wrapped to integer dtype dt, as storing and reloading it would. */
__device__ __forceinline__ int64_t diff_wrap(int64_t v, int dt) {
    int64_t tmp;
    dk_store_i64(&tmp, dt, v);
    return dk_load_i64(&tmp, dt);
}

/* One thread per output element: its window of order + 1 consecutive
 * elements along dim, differenced order times in place. */
__global__ void diff_k(pcu_diff a) {
    double fw[PCU_DIFF_MAX_ORDER + 1];
    int64_t iw[PCU_DIFF_MAX_ORDER + 1];
    bool fl = dk_is_float(a.odt), is_bool = a.odt == PETREL_DTYPE_BOOL;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < a.numel;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t c[PCU_MAX_RANK];
        dk_unravel(e, a.rank, a.oshape, c);
        for (int k = 0; k <= a.order; k++) {
            int64_t pos = c[a.dim] + k;
            int p = pos < a.len[0] ? 0 : pos < a.len[0] + a.len[1] ? 1 : 2;
            pos -= p == 0 ? 0 : p == 1 ? a.len[0] : a.len[0] + a.len[1];
            const pcu_tdesc &t = a.part[p];
            int64_t off = 0;
            for (int d = 0; d < a.rank; d++) off += (d == a.dim ? pos : c[d]) * t.stride[d];
            const char *sp = dk_at(t.data, t.dtype, off);
            if (fl) fw[k] = diff_round(dk_load_f64(sp, t.dtype), a.odt);
            else iw[k] = diff_wrap(dk_load_i64(sp, t.dtype), a.odt);
        }
        for (int pass = 0; pass < a.order; pass++)
            for (int k = 0; k < a.order - pass; k++) {
                if (fl) fw[k] = diff_round(fw[k + 1] - fw[k], a.odt);
                else if (is_bool) iw[k] = iw[k + 1] != iw[k];
                else iw[k] = diff_wrap((int64_t)((uint64_t)iw[k + 1] - (uint64_t)iw[k]), a.odt);
            }
        char *dst = dk_at(a.out, a.odt, e);
        if (fl) dk_store_f64(dst, a.odt, fw[0]);
        else dk_store_i64(dst, a.odt, iw[0]);
    }
}

} // namespace

/* ---- launchers ----------------------------------------------------------- */

extern "C" cudaError_t pcu_cat_bytes_launch(const pcu_cat_bytes *a, cudaStream_t s) {
    uint64_t g = (uint64_t)a->out_row | (uint64_t)(uintptr_t)a->out;
    int64_t most = 0;
    for (int i = 0; i < a->n; i++) {
        g |= (uint64_t)a->row[i] | (uint64_t)a->at[i] | (uint64_t)(uintptr_t)a->src[i];
        if (a->outer * a->row[i] > most) most = a->outer * a->row[i];
    }
    /* the largest unit dividing everything (units counted per input below) */
    int w = (g & 15) == 0 ? 16 : (g & 7) == 0 ? 8 : (g & 3) == 0 ? 4 : (g & 1) == 0 ? 2 : 1;
    dim3 grid(dk_blocks(most / w, DK_THREADS), (unsigned int)a->n);
    switch (w) {
    case 16: cat_bytes_k<uint4><<<grid, DK_THREADS, 0, s>>>(*a); break;
    case 8: cat_bytes_k<uint2><<<grid, DK_THREADS, 0, s>>>(*a); break;
    case 4: cat_bytes_k<uint32_t><<<grid, DK_THREADS, 0, s>>>(*a); break;
    case 2: cat_bytes_k<uint16_t><<<grid, DK_THREADS, 0, s>>>(*a); break;
    default: cat_bytes_k<uint8_t><<<grid, DK_THREADS, 0, s>>>(*a); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t pcu_cat_strided_launch(const pcu_cat_strided *a, cudaStream_t s) {
    int64_t most = 0;
    for (int i = 0; i < a->n; i++)
        if (a->numel[i] > most) most = a->numel[i];
    dim3 grid(dk_blocks(most, DK_THREADS), (unsigned int)a->n);
    cat_strided_k<<<grid, DK_THREADS, 0, s>>>(*a);
    return cudaGetLastError();
}

extern "C" cudaError_t pcu_remap_launch(const pcu_remap *a, cudaStream_t s) {
    remap_k<<<dk_blocks(a->numel, DK_THREADS), DK_THREADS, 0, s>>>(*a);
    return cudaGetLastError();
}

extern "C" cudaError_t pcu_diff_launch(const pcu_diff *a, cudaStream_t s) {
    diff_k<<<dk_blocks(a->numel, DK_THREADS), DK_THREADS, 0, s>>>(*a);
    return cudaGetLastError();
}
