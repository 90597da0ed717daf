/*
** fused_k.cu -- device kernels of the "fused" family: petrel.rope, the
** KV-cache write of petrel.sdpa_cache and petrel.rope_table (their
** meaning: ops.def).
*/
#include "dense_k.cuh"
#include "fused_k.h"

/* ---- petrel.rope ---------------------------------------------------------- */

/* Offsets of row `row` of x (all dims but the last) in x, cos and sin.
 * Rows number fewer than 2^31, so 32-bit division does (much cheaper
 * than 64-bit, and it is most of this tiny kernel's arithmetic). */
__device__ __forceinline__ void rope_row(const pcu_rope &a, unsigned row, int64_t *xo, int64_t *co, int64_t *so) {
    *xo = *co = *so = 0;
    for (int d = a.rank - 2; d >= 0; d--) {
        unsigned sz = (unsigned)a.shape[d], i = row % sz;
        row /= sz;
        *xo += i * a.xs[d], *co += i * a.cs[d], *so += i * a.ss[d];
    }
}

/* One block per row of x (all dims but the last); threads over channels.
 *   y[d] = round(x[d] * cos[d]) + round(rotate_half(x)[d] * sin[d])  (d < R)
 *   y[d] = x[d]                                                       (d >= R)
 * with rotate_half(x)[d] = -x[d + R/2] for d < R/2, x[d - R/2] after, and
 * each product rounded to the output dtype before the sum (the unfused
 * graph's rounding points).  T is the dtype of x and the output, C that
 * of cos and sin: with the types fixed, a thread's four loads are all in
 * flight together. */
template <typename T, typename C> __global__ void rope_kernel(pcu_rope a) {
    const int last = a.rank - 1;
    const int64_t D = a.shape[last], R = a.R, half = R / 2;
    int64_t xo, co, so;
    rope_row(a, blockIdx.x, &xo, &co, &so);
    dn_pdl_wait();
    dn_pdl_release();
    const T *x = (const T *)a.x + xo;
    const C *cs = (const C *)a.cos + co, *sn = (const C *)a.sin + so;
    const int64_t xsd = a.xs[last], csd = a.cs[last], ssd = a.ss[last];
    T *out = (T *)a.out + (int64_t)blockIdx.x * D;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float xv = dn_f32(x[d * xsd]), y = xv;
        if (d < R) {
            float xp = dn_f32(x[(d < half ? d + half : d - half) * xsd]);
            float c = dn_f32(cs[d * csd]), s = dn_f32(sn[d * ssd]);
            y = dn_round<T>(xv * c) + dn_round<T>((d < half ? -xp : xp) * s);
        }
        out[d] = dn_from<T>(y);
    }
}

/* The same for any mix of dtypes (each element converted at run time). */
__global__ void rope_any_kernel(pcu_rope a) {
    const int last = a.rank - 1;
    const int64_t D = a.shape[last], half = a.R / 2;
    int64_t xo, co, so;
    rope_row(a, blockIdx.x, &xo, &co, &so);
    dn_pdl_wait();
    dn_pdl_release();
    const int64_t xsd = a.xs[last], csd = a.cs[last], ssd = a.ss[last];
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float xv = dn_load(a.x, a.xdt, xo + d * xsd), y;
        if (d < a.R) {
            float rh = d < half ? -dn_load(a.x, a.xdt, xo + (d + half) * xsd) : dn_load(a.x, a.xdt, xo + (d - half) * xsd);
            float t1 = dn_round_to(xv * dn_load(a.cos, a.cdt, co + d * csd), a.odt);
            float t2 = dn_round_to(rh * dn_load(a.sin, a.sdt, so + d * ssd), a.odt);
            y = t1 + t2;
        } else {
            y = xv;
        }
        dn_store(a.out, a.odt, (int64_t)blockIdx.x * D + d, y);
    }
}

/* Launched like the norms (dense_k.cuh): may start while the kernel
 * before it finishes. */
template <typename T, typename C> static cudaError_t rope_go(cudaStream_t s, const pcu_rope *a, unsigned rows, int threads) {
    return dn_launch_pdl(rope_kernel<T, C>, dim3(rows), dim3((unsigned)threads), 0, s, *a);
}

template <typename T> static cudaError_t rope_cos(cudaStream_t s, const pcu_rope *a, unsigned rows, int threads) {
    switch (a->cdt) {
    case PETREL_DTYPE_F32: return rope_go<T, float>(s, a, rows, threads);
    case PETREL_DTYPE_F16: return rope_go<T, __half>(s, a, rows, threads);
    default: return rope_go<T, __nv_bfloat16>(s, a, rows, threads);
    }
}

extern "C" cudaError_t pcu_rope_launch(cudaStream_t s, const pcu_rope *a) {
    int64_t D = a->shape[a->rank - 1], rows = 1;
    for (int d = 0; d + 1 < a->rank; d++) rows *= a->shape[d];
    if (rows == 0 || D == 0) return cudaSuccess;
    if (rows > 0x7fffffff) return cudaErrorInvalidValue;
    int threads = D >= 256 ? 256 : (int)((D + 31) / 32 * 32);
    bool typed = a->odt == a->xdt && a->sdt == a->cdt &&
                 (a->cdt == PETREL_DTYPE_F32 || a->cdt == PETREL_DTYPE_F16 || a->cdt == PETREL_DTYPE_BF16);
    cudaError_t e;
    if (!typed) e = dn_launch_pdl(rope_any_kernel, dim3((unsigned)rows), dim3((unsigned)threads), 0, s, *a);
    else if (a->xdt == PETREL_DTYPE_F32) e = rope_cos<float>(s, a, (unsigned)rows, threads);
    else if (a->xdt == PETREL_DTYPE_F16) e = rope_cos<__half>(s, a, (unsigned)rows, threads);
    else if (a->xdt == PETREL_DTYPE_BF16) e = rope_cos<__nv_bfloat16>(s, a, (unsigned)rows, threads);
    else return cudaErrorInvalidValue;
    cudaError_t last = cudaGetLastError(); /* clear it either way */
    return e != cudaSuccess ? e : last;
}

/* ---- petrel.sdpa_cache: cache write ----------------------------------------- */

__device__ __forceinline__ int64_t fk_load_int(const void *p, int dt, int64_t i) {
    switch (dt) {
    case PETREL_DTYPE_I64: return ((const int64_t *)p)[i];
    case PETREL_DTYPE_I32: return ((const int32_t *)p)[i];
    case PETREL_DTYPE_I16: return ((const int16_t *)p)[i];
    case PETREL_DTYPE_I8: return ((const int8_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

/* One block per (b, h, i), copying row i of the new keys and values into
 * cache row pos[i].  The block first checks that no later row has the same
 * position (it would overwrite this one: the last one wins, and skipping
 * keeps the result deterministic).  The new row is loaded before the
 * position arrives -- its address does not depend on it -- so a decode step
 * waits for memory once. */
#define CW_THREADS 128
__global__ void __launch_bounds__(CW_THREADS) cache_write_kernel(pcu_cache_write a) {
    const int64_t i = blockIdx.x % a.L, bh = blockIdx.x / a.L, b = bh / a.H, h = bh % a.H;
    const int64_t ksrc = b * a.ks[0] + h * a.ks[1] + i * a.ks[2], vsrc = b * a.vs[0] + h * a.vs[1] + i * a.vs[2];
    const int64_t e0 = threadIdx.x, e1 = threadIdx.x + CW_THREADS;
    float k0 = e0 < a.E ? dn_load(a.k, a.kdt, ksrc + e0 * a.ks[3]) : 0.0f;
    float k1 = e1 < a.E ? dn_load(a.k, a.kdt, ksrc + e1 * a.ks[3]) : 0.0f;
    float v0 = e0 < a.Ev ? dn_load(a.v, a.vdt, vsrc + e0 * a.vs[3]) : 0.0f;
    float v1 = e1 < a.Ev ? dn_load(a.v, a.vdt, vsrc + e1 * a.vs[3]) : 0.0f;
    const int64_t p = fk_load_int(a.pos, a.pos_dt, i * a.pos_s);
    if (p < 0 || p >= a.S) return; /* out of range: cannot be reported from here */
    bool dup = false;
    for (int64_t i2 = i + 1 + threadIdx.x; i2 < a.L; i2 += CW_THREADS)
        dup |= fk_load_int(a.pos, a.pos_dt, i2 * a.pos_s) == p;
    if (__syncthreads_or(dup)) return;
    const int64_t kd = b * a.kcs[0] + h * a.kcs[1] + p * a.kcs[2], vd = b * a.vcs[0] + h * a.vcs[1] + p * a.vcs[2];
    if (e0 < a.E) dn_store(a.kc, a.kcdt, kd + e0 * a.kcs[3], k0);
    if (e1 < a.E) dn_store(a.kc, a.kcdt, kd + e1 * a.kcs[3], k1);
    if (e0 < a.Ev) dn_store(a.vc, a.vcdt, vd + e0 * a.vcs[3], v0);
    if (e1 < a.Ev) dn_store(a.vc, a.vcdt, vd + e1 * a.vcs[3], v1);
    for (int64_t e = threadIdx.x + 2 * CW_THREADS; e < a.E; e += CW_THREADS) /* head dims above 256 */
        dn_store(a.kc, a.kcdt, kd + e * a.kcs[3], dn_load(a.k, a.kdt, ksrc + e * a.ks[3]));
    for (int64_t e = threadIdx.x + 2 * CW_THREADS; e < a.Ev; e += CW_THREADS)
        dn_store(a.vc, a.vcdt, vd + e * a.vcs[3], dn_load(a.v, a.vdt, vsrc + e * a.vs[3]));
}

extern "C" cudaError_t pcu_cache_write_launch(cudaStream_t s, const pcu_cache_write *a) {
    int64_t blocks = a->B * a->H * a->L;
    if (blocks == 0) return cudaSuccess;
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
    cache_write_kernel<<<(unsigned)blocks, CW_THREADS, 0, s>>>(*a);
    return cudaGetLastError();
}

/* ---- petrel.rope_table ------------------------------------------------------- */

/* Position element i as float32: integers through double, as the CPU's
 * cast converts them. */
__device__ __forceinline__ float rt_pos(const void *p, int dt, int64_t i) {
    switch (dt) {
    case PETREL_DTYPE_F32:
    case PETREL_DTYPE_F16:
    case PETREL_DTYPE_BF16:
    case PETREL_DTYPE_F64: return dn_load(p, dt, i);
    default: return (float)(double)fk_load_int(p, dt, i);
    }
}

/* One thread per (b, l, i), i < H: f = float32(pos[b, l]) * float32(inv[i])
 * rounded to float32, then cos and sin of f in double (the CPU oracle's
 * precision, unary.c), each rounded to float32, times the scale, stored
 * at i and i + H of both tables.  Everything is read after the wait: the
 * positions come from the kernel before, and inv_freq may be state. */
#define RT_THREADS 128
__global__ void __launch_bounds__(RT_THREADS) rope_table_kernel(pcu_rope_table a) {
    const int64_t k = (int64_t)blockIdx.x * RT_THREADS + threadIdx.x, row = k / a.H, i = k % a.H;
    dn_pdl_wait();
    dn_pdl_release();
    if (row >= a.B * a.L) return;
    const int64_t b = row / a.L, l = row % a.L;
    const float f = __fmul_rn(rt_pos(a.pos, a.pos_dt, b * a.pos_s[0] + l * a.pos_s[1]),
                              dn_load(a.inv, a.inv_dt, i * a.inv_s));
    double sd, cd;
    sincos((double)f, &sd, &cd);
    const float c = __fmul_rn((float)cd, a.scale), s = __fmul_rn((float)sd, a.scale);
    const int64_t o = row * 2 * a.H + i;
    dn_store(a.cos, a.odt, o, c);
    dn_store(a.cos, a.odt, o + a.H, c);
    dn_store(a.sin, a.odt, o, s);
    dn_store(a.sin, a.odt, o + a.H, s);
}

/* Launched like rope (dense_k.cuh): may start while the kernel before it
 * finishes. */
extern "C" cudaError_t pcu_rope_table_launch(cudaStream_t s, const pcu_rope_table *a) {
    int64_t work = a->B * a->L * a->H;
    if (work == 0) return cudaSuccess;
    int64_t blocks = (work + RT_THREADS - 1) / RT_THREADS;
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
    cudaError_t e = dn_launch_pdl(rope_table_kernel, dim3((unsigned)blocks), dim3(RT_THREADS), 0, s, *a);
    cudaError_t last = cudaGetLastError(); /* clear it either way */
    return e != cudaSuccess ? e : last;
}
