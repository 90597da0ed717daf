/*
** index_k.cu -- device kernels of the "index" family (take along a dim,
** gather/scatter walks, advanced indexing, one_hot) behind the launchers
** of index_k.h.  Out-of-range indices: see index_k.h.
*/
#include "data_k.cuh"
#include "dense_k.cuh"
#include "index_k.h"

namespace {

/* ---- take (index_select, embedding) -------------------------------------- */

/* Wrapped index value t of a take, or -1 when out of range. */
__device__ __forceinline__ int64_t take_index(const pcu_take &a, int64_t t) {
    int64_t off = dk_offset(t, a.index.rank, a.index.shape, a.index.stride);
    int64_t v = dk_load_i64(dk_at(a.index.data, a.index.dtype, off), a.index.dtype);
    return dk_wrap(v, a.self.shape[a.dim]);
}

/* Element offset in self of the first element of row r (outer * nidx rows
 * of `inner` elements), given its wrapped index w. */
__device__ __forceinline__ int64_t take_row_offset(const pcu_take &a, int64_t r, int64_t w) {
    int64_t pre = r / a.nidx;
    return dk_offset(pre, a.dim, a.self.shape, a.self.stride) + w * a.self.stride[a.dim];
}

/* One output element per thread, any strides and dtypes. */
__global__ void take_k(pcu_take a) {
    int post_rank = a.self.rank - a.dim - 1;
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < a.numel;
         o += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = o / a.inner, post = o - r * a.inner;
        int64_t w = take_index(a, r % a.nidx);
        char *dst = dk_at(a.out, a.odt, o);
        if (w < 0) {
            dk_store_i64(dst, a.odt, 0);
            continue;
        }
        int64_t off = take_row_offset(a, r, w) +
                      dk_offset(post, post_rank, a.self.shape + a.dim + 1, a.self.stride + a.dim + 1);
        dk_copy_elem(dst, a.odt, dk_at(a.self.data, a.self.dtype, off), a.self.dtype);
    }
}

/* One row per block, copied in units U (embedding's fast path: one token's
 * weight row, 16 bytes per thread when aligned). */
template <typename U>
__global__ void take_rows_k(pcu_take a, int64_t rows, int64_t row_units) {
    dn_pdl_wait(); /* launched early (an embedding row in a decode step), as the elementwise kernels */
    dn_pdl_release();
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t w = take_index(a, r % a.nidx);
        U *dst = (U *)a.out + r * row_units;
        if (w < 0) {
            U zero{};
            for (int64_t u = threadIdx.x; u < row_units; u += blockDim.x) dst[u] = zero;
            continue;
        }
        const U *src = (const U *)dk_at(a.self.data, a.self.dtype, take_row_offset(a, r, w));
        for (int64_t u = threadIdx.x; u < row_units; u += blockDim.x) dst[u] = src[u];
    }
}

template <typename U>
cudaError_t take_rows_launch(const pcu_take *a, int64_t rows, int64_t row_bytes, cudaStream_t s) {
    int64_t units = row_bytes / (int64_t)sizeof(U);
    int threads = 32;
    while (threads < 256 && threads < units) threads *= 2;
    unsigned int blocks = (unsigned int)(rows < 65536 ? rows : 65536);
    return dn_launch_pdl(take_rows_k<U>, dim3(blocks), dim3((unsigned)threads), 0, s, *a, rows, units);
}

/* ---- gather / scatter walks ---------------------------------------------- */

__global__ void walk_k(pcu_walk a) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < a.numel;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t c[PCU_MAX_RANK];
        dk_unravel(e, a.rank, a.wshape, c);
        int64_t ioff = 0;
        for (int k = 0; k < a.rank; k++) ioff += c[k] * a.index.stride[k];
        int64_t w = dk_wrap(dk_load_i64(dk_at(a.index.data, a.index.dtype, ioff), a.index.dtype),
                            a.tgt.shape[a.dim]);
        int64_t toff = 0;
        for (int k = 0; k < a.rank; k++) toff += (k == a.dim ? w : c[k]) * a.tgt.stride[k];
        if (a.kind == PCU_WALK_GATHER) {
            char *dst = dk_at(a.out, a.odt, e);
            if (w < 0) dk_store_i64(dst, a.odt, 0);
            else dk_copy_elem(dst, a.odt, dk_at(a.tgt.data, a.tgt.dtype, toff), a.tgt.dtype);
            continue;
        }
        if (w < 0) continue;
        char *dst = dk_at(a.tgt.data, a.tgt.dtype, toff);
        if (a.kind == PCU_WALK_FILL) {
            dk_store_fill(dst, a.tgt.dtype, a.fill_is_int, a.fill_i, a.fill_f);
            continue;
        }
        int64_t soff = 0;
        for (int k = 0; k < a.rank; k++) soff += c[k] * a.src.stride[k];
        const char *sp = dk_at(a.src.data, a.src.dtype, soff);
        if (a.kind == PCU_WALK_SCATTER)
            dk_copy_elem(dst, a.tgt.dtype, sp, a.src.dtype);
        else if (dk_is_float(a.tgt.dtype))
            dk_atomic_add(dst, a.tgt.dtype, a.fill_f * dk_load_f64(sp, a.src.dtype), 0);
        else
            dk_atomic_add(dst, a.tgt.dtype, 0,
                          (int64_t)((uint64_t)a.fill_i * (uint64_t)dk_load_i64(sp, a.src.dtype)));
    }
}

/* ---- advanced indexing --------------------------------------------------- */

__global__ void adv_k(pcu_adv a) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < a.numel;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ridx[PCU_MAX_RANK];
        dk_unravel(e, a.rrank, a.rshape, ridx);
        int64_t off = 0;
        bool ok = true;
        int r = 0; /* next result dim that belongs to a None (sliced) self dim */
        for (int d = 0; d < a.self.rank; d++) {
            int64_t j;
            if (a.has[d]) {
                int64_t ioff = 0;
                for (int k = 0; k < a.br; k++) ioff += ridx[a.first + k] * a.istride[d][k];
                j = dk_wrap(dk_load_i64(dk_at(a.idata[d], a.idt[d], ioff), a.idt[d]), a.self.shape[d]);
                ok = ok && j >= 0;
            } else {
                if (r == a.first) r += a.br; /* skip over the broadcast block */
                j = ridx[r++];
            }
            off += j * a.self.stride[d];
        }
        if (!a.put) {
            char *dst = dk_at(a.out, a.odt, e);
            if (ok) dk_copy_elem(dst, a.odt, dk_at(a.self.data, a.self.dtype, off), a.self.dtype);
            else dk_store_i64(dst, a.odt, 0);
            continue;
        }
        if (!ok) continue;
        char *dst = dk_at(a.self.data, a.self.dtype, off);
        int dt = a.self.dtype;
        if (a.fill) {
            if (!a.accumulate) dk_store_fill(dst, dt, a.fill_is_int, a.fill_i, a.fill_f);
            else if (a.fill_is_int) dk_atomic_add(dst, dt, (double)a.fill_i, a.fill_i);
            else dk_atomic_add(dst, dt, a.fill_f, dk_f64_to_i64(a.fill_f));
            continue;
        }
        int64_t voff = 0;
        for (int k = 0; k < a.rrank; k++) voff += ridx[k] * a.values.stride[k];
        const char *vp = dk_at(a.values.data, a.values.dtype, voff);
        if (!a.accumulate) dk_copy_elem(dst, dt, vp, a.values.dtype);
        else dk_atomic_add(dst, dt, dk_load_f64(vp, a.values.dtype), dk_load_i64(vp, a.values.dtype));
    }
}

/* ---- one_hot ------------------------------------------------------------- */

__global__ void one_hot_k(pcu_one_hot a) {
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < a.numel;
         o += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = o / a.classes, c = o - t * a.classes;
        int64_t off = dk_offset(t, a.self.rank, a.self.shape, a.self.stride);
        int64_t v = dk_load_i64(dk_at(a.self.data, a.self.dtype, off), a.self.dtype);
        dk_store_i64(dk_at(a.out, a.odt, o), a.odt, v == c); /* out of range: a zero row */
    }
}

/* ---- topk ---------------------------------------------------------------- */

constexpr int TK_THREADS = 128;

/* Does (a, ia) come before (b, ib) in topk's order? */
__device__ __forceinline__ bool tk_before(float a, int64_t ia, float b, int64_t ib, bool largest) {
    bool an = isnan(a), bn = isnan(b);
    if (an || bn) return an != bn ? (largest ? an : bn) : ia < ib;
    if (a != b) return largest ? a > b : a < b;
    return ia < ib;
}

/* The first of two candidates (i < 0: none). */
__device__ __forceinline__ void tk_pick(float &v, int64_t &i, float v2, int64_t i2, bool largest) {
    if (i2 >= 0 && (i < 0 || tk_before(v2, i2, v, i, largest))) v = v2, i = i2;
}

__device__ __forceinline__ void tk_warp_pick(float &v, int64_t &i, bool largest) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        int64_t i2 = __shfl_xor_sync(0xffffffffu, i, o);
        tk_pick(v, i, v2, i2, largest);
    }
}

/* Row r's offsets in self and the outputs. */
__device__ __forceinline__ void tk_row(const pcu_topk_rows &a, int64_t r, int64_t &sbase, int64_t &obase) {
    int64_t rest = r;
    sbase = 0, obase = 0;
    for (int d = a.self.rank - 1; d >= 0; d--) {
        if (d == a.dim) continue;
        int64_t c = rest % a.self.shape[d];
        rest /= a.self.shape[d];
        sbase += c * a.self.stride[d], obase += c * a.ostride[d];
    }
}

/* The j-th pick of a row: element bi's value and index. */
__device__ __forceinline__ void tk_store(const pcu_topk_rows &a, int64_t sbase, int64_t obase, int64_t j, int64_t bi) {
    const int64_t o = obase + j * a.ostride[a.dim];
    if (a.vals)
        dk_copy_elem(dk_at(a.vals, a.self.dtype, o), a.self.dtype,
                     dk_at(a.self.data, a.self.dtype, sbase + bi * a.self.stride[a.dim]), a.self.dtype);
    if (a.idx) ((int64_t *)a.idx)[o] = bi;
}

__global__ void topk_rows_k(pcu_topk_rows a) {
    __shared__ float sv[TK_THREADS / 32];
    __shared__ int64_t si[TK_THREADS / 32];
    __shared__ float pv;
    __shared__ int64_t pi;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    bool largest = a.largest != 0;
    for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
        int64_t sbase, obase;
        tk_row(a, r, sbase, obase);
        const int64_t sd = a.self.stride[a.dim];
        for (int64_t j = 0; j < a.k; j++) {
            float bv = 0.0f;
            int64_t bi = -1;
            for (int64_t p = threadIdx.x; p < a.len; p += TK_THREADS) {
                float v = dn_load(a.self.data, a.self.dtype, sbase + p * sd);
                if (j > 0 && !tk_before(pv, pi, v, p, largest)) continue; /* picked already */
                tk_pick(bv, bi, v, p, largest);
            }
            tk_warp_pick(bv, bi, largest);
            if (lane == 0) sv[warp] = bv, si[warp] = bi;
            __syncthreads();
            if (warp == 0) {
                bv = lane < TK_THREADS / 32 ? sv[lane] : 0.0f;
                bi = lane < TK_THREADS / 32 ? si[lane] : -1;
                tk_warp_pick(bv, bi, largest);
                if (lane == 0) {
                    tk_store(a, sbase, obase, j, bi);
                    pv = bv, pi = bi;
                }
            }
            __syncthreads();
        }
    }
}

/* Rows of at most 32 * PER elements (a router's experts): a warp per row,
 * its values read once into registers (lane l holds elements l, l + 32,
 * ...), then k passes of warp shuffles in the same order as topk_rows_k,
 * with no block barrier. */
template <int PER>
__global__ void topk_warp_k(pcu_topk_rows a) {
    const int lane = threadIdx.x & 31, wpb = TK_THREADS / 32;
    const bool largest = a.largest != 0;
    for (int64_t r = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); r < a.rows; r += (int64_t)gridDim.x * wpb) {
        int64_t sbase, obase;
        tk_row(a, r, sbase, obase);
        const int64_t sd = a.self.stride[a.dim];
        float v[PER];
#pragma unroll
        for (int i = 0; i < PER; i++) {
            const int64_t p = lane + 32 * i;
            v[i] = p < a.len ? dn_load(a.self.data, a.self.dtype, sbase + p * sd) : 0.0f;
        }
        float pv = 0.0f;
        int64_t pi = -1;
        for (int64_t j = 0; j < a.k; j++) {
            float bv = 0.0f;
            int64_t bi = -1;
#pragma unroll
            for (int i = 0; i < PER; i++) {
                const int64_t p = lane + 32 * i;
                if (p < a.len && (j == 0 || tk_before(pv, pi, v[i], p, largest))) tk_pick(bv, bi, v[i], p, largest);
            }
            tk_warp_pick(bv, bi, largest); /* every lane holds the pick */
            if (lane == 0) tk_store(a, sbase, obase, j, bi);
            pv = bv, pi = bi;
        }
    }
}

} // namespace

/* ---- launchers ----------------------------------------------------------- */

extern "C" cudaError_t pcu_take_launch(const pcu_take *a, cudaStream_t s) {
    if (!a->rows) {
        take_k<<<dk_blocks(a->numel, DK_THREADS), DK_THREADS, 0, s>>>(*a);
        return cudaGetLastError();
    }
    int64_t es = (int64_t)petrel_dtype_size((petrel_dtype)a->odt);
    int64_t row_bytes = a->inner * es, rows = a->numel / a->inner;
    /* the largest unit dividing every row start and length */
    uint64_t g = (uint64_t)(uintptr_t)a->self.data | (uint64_t)(uintptr_t)a->out |
                 (uint64_t)row_bytes | (uint64_t)(a->self.stride[a->dim] * es);
    for (int d = 0; d < a->dim; d++)
        if (a->self.shape[d] > 1) g |= (uint64_t)(a->self.stride[d] * es);
    if ((g & 15) == 0) return take_rows_launch<uint4>(a, rows, row_bytes, s);
    if ((g & 7) == 0) return take_rows_launch<uint2>(a, rows, row_bytes, s);
    if ((g & 3) == 0) return take_rows_launch<uint32_t>(a, rows, row_bytes, s);
    if ((g & 1) == 0) return take_rows_launch<uint16_t>(a, rows, row_bytes, s);
    return take_rows_launch<uint8_t>(a, rows, row_bytes, s);
}

extern "C" cudaError_t pcu_walk_launch(const pcu_walk *a, cudaStream_t s) {
    walk_k<<<dk_blocks(a->numel, DK_THREADS), DK_THREADS, 0, s>>>(*a);
    return cudaGetLastError();
}

extern "C" cudaError_t pcu_adv_launch(const pcu_adv *a, cudaStream_t s) {
    adv_k<<<dk_blocks(a->numel, DK_THREADS), DK_THREADS, 0, s>>>(*a);
    return cudaGetLastError();
}

extern "C" cudaError_t pcu_topk_rows_launch(const pcu_topk_rows *a, cudaStream_t s) {
    if (a->rows <= 0 || a->k <= 0) return cudaSuccess;
    const int64_t wb = (a->rows + TK_THREADS / 32 - 1) / (TK_THREADS / 32); /* blocks of a warp per row */
    const unsigned g = (unsigned)(wb < 65535 ? wb : 65535);
    if (a->len <= 32) topk_warp_k<1><<<g, TK_THREADS, 0, s>>>(*a);
    else if (a->len <= 64) topk_warp_k<2><<<g, TK_THREADS, 0, s>>>(*a);
    else if (a->len <= 128) topk_warp_k<4><<<g, TK_THREADS, 0, s>>>(*a);
    else if (a->len <= 256) topk_warp_k<8><<<g, TK_THREADS, 0, s>>>(*a);
    else if (a->len <= 512) topk_warp_k<16><<<g, TK_THREADS, 0, s>>>(*a);
    else topk_rows_k<<<(unsigned)(a->rows < 65535 ? a->rows : 65535), TK_THREADS, 0, s>>>(*a);
    return cudaGetLastError();
}

extern "C" cudaError_t pcu_one_hot_launch(const pcu_one_hot *a, cudaStream_t s) {
    one_hot_k<<<dk_blocks(a->numel, DK_THREADS), DK_THREADS, 0, s>>>(*a);
    return cudaGetLastError();
}
