/*
** qkv_attn_k.cu -- the decode kernel of petrel.qkv_attn (qkv_attn_k.h):
** a layer's q/k/v projections over int4 weights and its attention step in
** one launch.  Launched as two (the ring GEMV of quant_k.cu, then the
** decode attention of sdpa_k.cu) the step pays a kernel boundary, the
** attention's reload of q/k/v and its own prologue; here they stay on chip.
**
** A cluster of QA_CL blocks per k/v head h.  Block b owns rows
** b * rpb .. of the head's (G + 2) E projection rows (its G query heads'
** rows of W_q, then its rows of W_k and W_v) and, before waiting for the
** kernel before (programmatic dependent launch: the weights are program
** constants), bulk-copies their codes, scales and zero points into shared
** memory.  After the wait: x (with the RMSNorm prologue's weight) into the
** ring GEMV's 16-bit records (quant_k.cuh), a warp per row multiplying
** them with dp4a as the ring GEMV does, the same sums in the same order, so
** each projection is the GEMV's value bit for bit; each value is stored in
** every block of the cluster (distributed shared memory) and in p[i].
** Then the rope on q and the new k, the new rows into the caches (block
** 0), and the attention as the decode kernel's short-context form: a warp
** per (query row, 32-key chunk) with an online softmax, the warps' and
** then the blocks' partials merged (the blocks' in block 0, through
** distributed shared memory).  The keys are split over the warps
** differently from the decode kernel's, so the attention's sums round
** differently: not the two launches' values bit for bit.
**
** Before the wait each block also asks L2 for the cache rows of its
** warps' first chunks below the executor's position bound (keys_below);
** after it, the rope's row is read beside x, and the projections are
** stored as results only after the cluster barrier (a store before the
** barrier's release holds it for a round trip).
**
** Measured on an H100 (tests/gpu/bench_qkv_attn.cu: a Llama-3.2-1B
** layer's shapes, int4 groups of 32, bf16, 301 positions, 16 layers in one
** CUDA graph with o, gate/up and down): 31.8 us per layer against the two
** launches' 32.7, q/k/v and attention alone 11.05 against 12.6;
** Llama-3.2-1B int4 with the quantized embedding decodes 1,707 tok/s
** against 1,662.  A prototype specialized to that one shape (constants
** for every size, one weight tensor, the key loop left at the first chunk
** without a visible key) took 30.2 us in the same harness: about 1.6 us a
** layer are still to be found.
*/
#include <cooperative_groups.h>

#include "../../../core/quant_fmt.h"
#include "dense_k.cuh"
#include "quant_k.cuh"
#include "qkv_attn_k.h"

namespace cg = cooperative_groups;

#define QA_THREADS 256
#define QA_WARPS (QA_THREADS / 32)
#define QA_CL 16                  /* blocks per k/v head: one cluster */
#define QA_SMEM_MAX (227 * 1024)  /* sm_90's shared memory per block */

/* Shared memory of one block (byte offsets): its weight rows' codes,
 * scales and zero points (bulk-copied), x's records, the head's
 * projections (float), the rotated queries, the new k and v rows, the
 * warps' partials, block 0's inbox of the blocks' partials, the norm's
 * sums, the copies' mbarrier. */
struct qa_layout {
    int rpb, ng;
    size_t codes, sc, z, xr, qkv, qs, kn, trig, wp, inbox, red, mbar, total;
    size_t qkw, rn; /* the q/k norm's weights (2 E floats), its rows' 1 / rms (16 floats) */
};

__host__ __device__ inline qa_layout qa_layout_of(int64_t K, int G, int gq, int E, bool asym, int es) {
    qa_layout L;
    L.rpb = (gq + 2) * E / QA_CL;
    L.ng = (int)(K / G);
    size_t o = 0;
    L.codes = o, o += (size_t)L.rpb * (size_t)(K / 2);
    L.sc = o, o += (size_t)L.rpb * (size_t)L.ng * (size_t)es;
    L.z = o, o += asym ? (size_t)L.rpb * (size_t)L.ng : 0;
    o = (o + 15) / 16 * 16;
    L.xr = o, o += (size_t)(K / 32) * Q4_XREC;
    L.qkv = o, o += (size_t)(gq + 2) * (size_t)E * 4;
    L.qs = o, o += (size_t)gq * (size_t)E * 4;
    L.kn = o, o += (size_t)2 * (size_t)E * (size_t)es;
    o = (o + 15) / 16 * 16;
    L.trig = o, o += (size_t)2 * (size_t)E * 4;
    L.qkw = o, o += (size_t)2 * (size_t)E * 4;
    L.rn = o, o += 16 * 4;
    L.wp = o, o += (size_t)QA_WARPS * (size_t)(E + 2) * 4;
    L.inbox = o, o += (size_t)QA_CL * (size_t)gq * (size_t)(E + 2) * 4;
    L.red = o, o += QA_WARPS * 4;
    o = (o + 7) / 8 * 8;
    L.mbar = o, o += 8;
    L.total = o;
    return L;
}

/* ---- cluster and copy plumbing (sm_90; addresses: dense_k.cuh) ----------------------- */

__device__ __forceinline__ void qa_st_remote(unsigned addr, float v) {
    asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(addr), "f"(v) : "memory");
}
__device__ __forceinline__ void qa_cl_arrive_relaxed() {
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void qa_cl_arrive() { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); }
__device__ __forceinline__ void qa_cl_wait() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }
__device__ __forceinline__ void qa_mb_init(uint64_t *b) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(dn_saddr(b)));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void qa_mb_expect(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(dn_saddr(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void qa_mb_wait(uint64_t *b) {
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], 0;\n @!p bra W;\n}" ::"r"(
                     dn_saddr(b))
                 : "memory");
}
__device__ __forceinline__ void qa_bulk(void *dst, const void *src, unsigned bytes, uint64_t *b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     dn_saddr(dst)),
                 "l"(src), "r"(bytes), "r"(dn_saddr(b))
                 : "memory");
}

/* ---- pieces -------------------------------------------------------------------- */

/* Row lr of head h's projection rows: its weight (0 q, 1 k, 2 v), its row
 * there and the end (head-local) of that weight's rows. */
__device__ __forceinline__ void qa_row(int lr, int gq, int E, int h, int *w, int64_t *row, int *end) {
    if (lr < gq * E) *w = 0, *row = (int64_t)h * gq * E + lr, *end = gq * E;
    else if (lr < (gq + 1) * E) *w = 1, *row = (int64_t)h * E + (lr - gq * E), *end = (gq + 1) * E;
    else *w = 2, *row = (int64_t)h * E + (lr - (gq + 1) * E), *end = (gq + 2) * E;
}

/* acc + the chunk of 32 int4 codes c times x's record rec, scale s, zero
 * point z (= zp - qmin): the ring GEMV's arithmetic (quant_k.cu). */
__device__ __forceinline__ float qa_cdot(const uint4 &c, const uint8_t *rec, float s, int z, float acc) {
    const uint4 h0 = ((const uint4 *)rec)[0], h1 = ((const uint4 *)rec)[1];
    const uint4 l0 = ((const uint4 *)rec)[2], l1 = ((const uint4 *)rec)[3];
    const float4 sv = *(const float4 *)(rec + 64);
    const uint32_t cw[4] = {c.x, c.y, c.z, c.w};
    int eh = 0, oh = 0, el = 0, ol = 0;
#pragma unroll
    for (int wd = 0; wd < 4; wd++) {
        const uint4 &hv = wd < 2 ? h0 : h1, &lv = wd < 2 ? l0 : l1;
        const uint32_t xhe = wd % 2 ? hv.z : hv.x, xho = wd % 2 ? hv.w : hv.y;
        const uint32_t xle = wd % 2 ? lv.z : lv.x, xlo = wd % 2 ? lv.w : lv.y;
        const uint32_t a = cw[wd] & 0x0f0f0f0fu, b = cw[wd] & 0xf0f0f0f0u;
        eh = q4_dp4a(a, xhe, eh);
        oh = q4_dp4a(b, xho, oh);
        el = q4_dp4a(a, xle, el);
        ol = q4_dp4a(b, xlo, ol);
    }
    const int v16 = (__float_as_int(sv.y) + __float_as_int(sv.z)) * 16;
    return fmaf(s * (sv.x * 0.0625f), (float)(eh * 4096 + oh * 256 + el * 16 + ol - z * v16), acc);
}

/* The mask's score term of query head hq and key j: 0 or -inf for a bool
 * mask, the value of a float one, 0 without. */
__device__ __forceinline__ float qa_mask(const pcu_qkv_attn &a, int hq, int64_t j) {
    if (!a.mask) return 0.0f;
    const int64_t o = hq * a.m_hs + j * a.m_ss;
    switch (a.mask_dtype) {
    case PETREL_DTYPE_BOOL: return ((const uint8_t *)a.mask)[o] ? 0.0f : -INFINITY;
    case PETREL_DTYPE_F32: return ((const float *)a.mask)[o];
    case PETREL_DTYPE_F16: return __half2float(((const __half *)a.mask)[o]);
    default: return __bfloat162float(((const __nv_bfloat16 *)a.mask)[o]);
    }
}

__device__ __forceinline__ int64_t qa_pos(const pcu_qkv_attn &a) {
    switch (a.pos_dt) {
    case PETREL_DTYPE_I64: return *(const int64_t *)a.pos;
    case PETREL_DTYPE_I32: return *(const int32_t *)a.pos;
    default: return *(const int16_t *)a.pos;
    }
}

/* ---- the kernel ------------------------------------------------------------------ */

template <typename T, int E, bool NORM, bool ASYM>
__global__ void __launch_bounds__(QA_THREADS, 1) qkv_attn_kernel(pcu_qkv_attn a) {
    constexpr int LPK = E / 64;    /* lanes per key: each holds 64 elements of its key's K row */
    constexpr int KPC = 32 / LPK;  /* keys per chunk */
    constexpr int NCV = E / 8;     /* 16-byte pieces of a V row */
    constexpr int KPL = 32 / NCV;  /* keys per V load of a warp */
    constexpr int ES = (int)sizeof(T);
    constexpr unsigned FULL = 0xffffffffu;
    extern __shared__ __align__(128) uint8_t sm[];
    const int gq = a.Hq / a.Hkv;
    const int64_t K = a.K;
    const qa_layout L = qa_layout_of(K, a.G, gq, E, ASYM, ES);
    uint8_t *codes = sm + L.codes, *xr = sm + L.xr;
    const T *scs = (const T *)(sm + L.sc);
    const int8_t *zs = (const int8_t *)(sm + L.z);
    float *qkv = (float *)(sm + L.qkv), *qs = (float *)(sm + L.qs), *wp = (float *)(sm + L.wp);
    float *inbox = (float *)(sm + L.inbox), *red = (float *)(sm + L.red), *trig = (float *)(sm + L.trig);
    float *qkw = (float *)(sm + L.qkw), *rn = (float *)(sm + L.rn);
    T *knr = (T *)(sm + L.kn), *vnr = knr + E;
    uint64_t *mbar = (uint64_t *)(sm + L.mbar);
    cg::cluster_group cluster = cg::this_cluster();
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const int crank = (int)cluster.block_rank(), h = (int)(blockIdx.x / QA_CL);
    const int rpb = L.rpb, r0 = crank * rpb, ng = L.ng;

    /* before the wait: the block's weight rows, pieces of consecutive rows of one weight */
    if (t == 0) {
        qa_mb_init(mbar);
        qa_mb_expect(mbar, (unsigned)((size_t)rpb * ((size_t)(K / 2) + (size_t)ng * (ES + (ASYM ? 1 : 0)))));
        for (int r = r0; r < r0 + rpb;) {
            int w, end;
            int64_t row;
            qa_row(r, gq, E, h, &w, &row, &end);
            const int n = min(r0 + rpb, end) - r, lr = r - r0;
            qa_bulk(codes + (size_t)lr * (size_t)(K / 2), a.codes[w] + row * (K / 2), (unsigned)(n * (K / 2)), mbar);
            qa_bulk(sm + L.sc + (size_t)lr * ng * ES, (const uint8_t *)a.scales[w] + row * ng * ES,
                    (unsigned)(n * ng * ES), mbar);
            if (ASYM) qa_bulk(sm + L.z + (size_t)lr * ng, a.zeros[w] + row * ng, (unsigned)(n * ng), mbar);
            r += n;
        }
    }
    /* the attention's warp: query row rw of the head, chunk slot `slot` */
    const int nslot = QA_WARPS / gq, rw = warp % gq, slot = warp / gq;
    const bool active = slot < nslot;
    const int hq = h * gq + rw;
    const int64_t nchunks = (a.S + KPC - 1) / KPC, cstep = (int64_t)nslot * QA_CL;
    int64_t ch = active ? (int64_t)slot * QA_CL + crank : nchunks;
#ifndef QA_NO_PREFETCH
    /* the cache rows of its chunks below the position bound asked of L2
     * (they were written by earlier steps; the new row comes from shared
     * memory); only the first query row's warps ask */
    if (rw == 0)
        for (int64_t c = ch; c < nchunks && c * KPC < a.keys_below; c += cstep) {
            const int64_t j = c * KPC + lane % KPC;
            if (j < a.S) {
                const T *kp = (const T *)a.kc + h * a.k_hs + j * a.k_ss + (lane / KPC) * 64;
                const T *vp = (const T *)a.vc + h * a.v_hs + j * a.v_ss + (lane / KPC) * 64;
                asm volatile("prefetch.global.L2 [%0];" ::"l"(kp));
                asm volatile("prefetch.global.L2 [%0];" ::"l"(vp));
            }
        }
#endif
    qa_cl_arrive_relaxed();
    __syncthreads(); /* the mbarrier is set up */
    dn_pdl_wait();   /* x, the mask and the position come from the kernels before */

    /* the first chunk's mask term loaded now, beside x */
    auto mask_of = [&](int64_t c) {
        const int64_t j = c * KPC + lane % KPC;
        return c < nchunks && j < a.S && !(a.causal && j > 0) ? qa_mask(a, hq, j) : -INFINITY;
    };
    float mt = mask_of(ch);
    const int64_t p = qa_pos(a);
    const int R = a.rcos ? a.R : 0, hr = R / 2;
    if (t < R) /* the rope's row, for after the projections (the barrier below publishes it) */
        trig[t] = dn_f32(((const T *)a.rcos)[t]), trig[E + t] = dn_f32(((const T *)a.rsin)[t]);
    if (a.qnw && t < E) /* likewise the q/k norm's weights (1 + w with add_one, in float) */
        qkw[t] = dn_f32(((const T *)a.qnw)[t]) + (a.nadd_one ? 1.0f : 0.0f),
        qkw[E + t] = dn_f32(((const T *)a.knw)[t]) + (a.nadd_one ? 1.0f : 0.0f);

    /* x's prologue: its records (of x * w rounded, with the norm), its sum of squares */
    float ss = 0.0f;
    const int nv = (int)(K / 8); /* 8-element vectors: a multiple of 32 */
    for (int v0 = 0; v0 < nv; v0 += QA_THREADS) {
        if (v0 + (t & ~31) >= nv) continue; /* the whole warp: xquant's shuffles take every lane */
        const int v = v0 + t;
        float f[8];
        dn_unpack(*(const uint4 *)((const T *)a.x + (size_t)v * 8), f, T());
        if (NORM) {
            float w[8];
            dn_unpack(*(const uint4 *)((const T *)a.norm_w + (size_t)v * 8), w, T());
#pragma unroll
            for (int e = 0; e < 8; e++) {
                ss = fmaf(f[e], f[e], ss);
                f[e] = dn_round<T>(a.norm_add_one ? fmaf(f[e], w[e], f[e]) : f[e] * w[e]);
            }
        }
        q4_xquant<4>(f, xr + (size_t)(v / 4) * Q4_XREC, v % 4, true);
    }
    if (NORM) {
        const float s2 = dn_warp_sum(ss);
        if (lane == 0) red[warp] = s2;
    }
    __syncthreads();
    float rstd = 1.0f;
    if (NORM) {
        float tt = 0.0f;
#pragma unroll
        for (int k = 0; k < QA_WARPS; k++) tt += red[k];
        rstd = 1.0f / sqrtf(tt / (float)K + a.norm_eps);
    }
    qa_mb_wait(mbar);

    /* the block's rows, a warp each, lanes over the chunks; each value to every block */
    qa_cl_wait(); /* every block of the cluster runs: remote stores are safe */
    const unsigned qkv_sa = dn_saddr(qkv);
    const int nch = (int)(K / 32), lg = a.G == 32 ? 0 : a.G == 64 ? 1 : 2, qmin = ASYM ? 0 : -8;
    for (int rr = warp; rr < rpb; rr += QA_WARPS) {
        float acc = 0.0f;
        const uint8_t *crow = codes + (size_t)rr * (size_t)(K / 2);
        for (int c0 = lane; c0 < nch; c0 += 128) { /* the lane's chunks in order, loads first */
            uint4 cv[4];
            float sc[4];
            int z[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int c = c0 + 32 * u, gi = c >> lg;
                if (c < nch) {
                    cv[u] = *(const uint4 *)(crow + c * 16);
                    sc[u] = dn_f32(scs[rr * ng + gi]);
                    z[u] = (ASYM ? (int)zs[rr * ng + gi] : 0) - qmin;
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++)
                if (c0 + 32 * u < nch) acc = qa_cdot(cv[u], xr + (size_t)(c0 + 32 * u) * Q4_XREC, sc[u], z[u], acc);
        }
        acc = dn_warp_sum(acc);
        const float v = dn_round<T>(acc * rstd);
        if (lane < QA_CL) qa_st_remote(dn_mapa(qkv_sa + (unsigned)(r0 + rr) * 4u, (unsigned)lane), v);
    }
    qa_cl_arrive();
    qa_cl_wait(); /* every block holds the head's projections */
    dn_pdl_release();
    /* the block's rows stored as results only now: a store before the
     * barrier's release would hold it until the store completes */
    for (int i = t; i < rpb; i += QA_THREADS) {
        int w, end;
        int64_t row;
        qa_row(r0 + i, gq, E, h, &w, &row, &end);
        ((T *)a.p[w])[row] = dn_from<T>(qkv[r0 + i]);
    }

    /* the q/k norm's 1 / rms of the query rows and the new k row (a warp a row) */
    if (a.qnw) {
        for (int r = warp; r <= gq; r += QA_WARPS) {
            float s2 = 0.0f;
            for (int e = lane; e < E; e += 32) s2 = fmaf(qkv[r * E + e], qkv[r * E + e], s2);
            s2 = dn_warp_sum(s2);
            if (lane == 0) rn[r] = 1.0f / sqrtf(s2 / (float)E + a.neps);
        }
        __syncthreads();
    }
    /* petrel.rms_norm's element e of row r (the query rows' weight, or the new k's) */
    auto nrm = [&](int r, int e) {
        float v = qkv[r * E + e] * rn[r];
        if (a.nround) v = dn_round<T>(v);
        return dn_round<T>(v * qkw[(r < gq ? 0 : E) + e]);
    };
    /* the rope on q and the new k (petrel.rope's rounding points); the new rows */
    for (int i = t; i < (gq + 2) * E; i += QA_THREADS) {
        const int r = i / E, e = i - r * E;
        const bool norm = a.qnw && r <= gq;
        float v = norm ? nrm(r, e) : qkv[i];
        if (r <= gq && e < R) {
            const int pe = e < hr ? e + hr : e - hr;
            const float xp = norm ? nrm(r, pe) : qkv[r * E + pe];
            const float c = trig[e], s = trig[E + e];
            v = dn_round<T>(dn_round<T>(v * c) + dn_round<T>((e < hr ? -xp : xp) * s));
        }
        if (r < gq) qs[i] = v;
        else if (r == gq) knr[e] = dn_from<T>(v);
        else vnr[e] = dn_from<T>(v);
    }
    __syncthreads();
    const T *kcache = (const T *)a.kc + h * a.k_hs, *vcache = (const T *)a.vc + h * a.v_hs;
    if (crank == 0 && p >= 0 && p < a.S)
        for (int i = t; i < 2 * E; i += QA_THREADS) {
            if (i < E) ((T *)a.kc)[h * a.k_hs + p * a.k_ss + i] = knr[i];
            else ((T *)a.vc)[h * a.v_hs + p * a.v_ss + (i - E)] = vnr[i - E];
        }

    /* the keys: warp (rw, slot) takes chunks slot * QA_CL + crank + n * nslot * QA_CL */
    float m = -INFINITY, l = 0.0f, acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) acc[e] = 0.0f;
    const int half = LPK == 2 ? lane / 16 : 0;
    const int vkey = lane / NCV, vcol = (lane % NCV) * 8;
    const float *qrow = qs + rw * E + half * 64;
    for (; ch < nchunks; ch += cstep) {
        const int64_t j0 = ch * KPC, j = j0 + lane % KPC;
        const float mnext = mask_of(ch + cstep); /* in flight meanwhile */
        const bool see = mt != -INFINITY;
        const unsigned need = __ballot_sync(FULL, see);
        if (need) {
            uint4 kr[8], vr[8];
            const T *krow = (j == p ? knr : kcache + j * a.k_ss) + half * 64;
#pragma unroll
            for (int c = 0; c < 8; c++) kr[c] = see ? ((const uint4 *)krow)[c] : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const int jj = u * KPL + vkey;
                const T *vrow = j0 + jj == p ? vnr : vcache + (j0 + jj) * a.v_ss;
                vr[u] = (need >> jj & 1u) ? *(const uint4 *)(vrow + vcol) : make_uint4(0, 0, 0, 0);
            }
            float s = 0.0f;
#pragma unroll
            for (int c = 0; c < 8; c++) {
                float f[8];
                dn_unpack(kr[c], f, T());
                const float4 q0 = ((const float4 *)(qrow + c * 8))[0], q1 = ((const float4 *)(qrow + c * 8))[1];
                s = fmaf(q0.x, f[0], s), s = fmaf(q0.y, f[1], s), s = fmaf(q0.z, f[2], s), s = fmaf(q0.w, f[3], s);
                s = fmaf(q1.x, f[4], s), s = fmaf(q1.y, f[5], s), s = fmaf(q1.z, f[6], s), s = fmaf(q1.w, f[7], s);
            }
            if (LPK == 2) s += __shfl_xor_sync(FULL, s, 16); /* the row's two halves */
            s = see ? s * a.scale + mt : -INFINITY;
            float mn = s;
#pragma unroll
            for (int sh = KPC / 2; sh > 0; sh >>= 1) mn = dn_nanmax(mn, __shfl_xor_sync(FULL, mn, sh));
            mn = dn_nanmax(m, mn);
            const bool none = mn == -INFINITY;
            const float corr = none ? 1.0f : expf(m - mn), pr = none ? 0.0f : expf(s - mn);
            float sum = pr;
#pragma unroll
            for (int sh = KPC / 2; sh > 0; sh >>= 1) sum += __shfl_xor_sync(FULL, sum, sh);
            l = l * corr + sum, m = mn;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] *= corr;
#pragma unroll
            for (int u = 0; u < 8; u++) {
                float f[8];
                dn_unpack(vr[u], f, T());
                const float pj = __shfl_sync(FULL, pr, u * KPL + vkey);
#pragma unroll
                for (int e = 0; e < 8; e++) acc[e] = fmaf(pj, f[e], acc[e]);
            }
        }
        mt = mnext;
    }

    /* the warp's partials (lanes holding the same columns summed), then the
     * block's per row, sent to block 0's inbox */
#pragma unroll
    for (int off = NCV; off < 32; off <<= 1)
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] += __shfl_xor_sync(FULL, acc[e], off);
    float *ww = wp + warp * (E + 2);
    if (lane < NCV)
#pragma unroll
        for (int e = 0; e < 8; e++) ww[2 + lane * 8 + e] = acc[e];
    if (lane == 0) ww[0] = active ? m : -INFINITY, ww[1] = l;
    __syncthreads();
    const unsigned ib = dn_mapa(dn_saddr(inbox + (size_t)crank * gq * (E + 2)), 0);
    for (int i = t; i < gq * E; i += QA_THREADS) {
        const int r = i / E, e = i - r * E;
        float M = -INFINITY, num = 0.0f, den = 0.0f;
        for (int sl = 0; sl < nslot; sl++) M = dn_nanmax(M, wp[(r + sl * gq) * (E + 2)]);
        for (int sl = 0; sl < nslot; sl++) {
            const float *pw = wp + (r + sl * gq) * (E + 2);
            if (pw[0] == -INFINITY) continue; /* saw no key */
            const float wt = expf(pw[0] - M);
            num = fmaf(wt, pw[2 + e], num), den = fmaf(wt, pw[1], den);
        }
        const unsigned d = ib + (unsigned)(r * (E + 2)) * 4u;
        qa_st_remote(d + (unsigned)(2 + e) * 4u, num);
        if (e == 0) qa_st_remote(d, M), qa_st_remote(d + 4u, den);
    }
    qa_cl_arrive();
    qa_cl_wait();
    if (crank != 0) return;
    for (int i = t; i < gq * E; i += QA_THREADS) {
        const int r = i / E, e = i - r * E;
        float M = -INFINITY, num = 0.0f, den = 0.0f;
        for (int c = 0; c < QA_CL; c++) M = dn_nanmax(M, inbox[(c * gq + r) * (E + 2)]);
        for (int c = 0; c < QA_CL; c++) {
            const float *pc = inbox + (c * gq + r) * (E + 2);
            if (pc[0] == -INFINITY) continue;
            const float wt = expf(pc[0] - M);
            num = fmaf(wt, pc[2 + e], num), den = fmaf(wt, pc[1], den);
        }
        ((T *)a.out)[(int64_t)(h * gq + r) * E + e] = dn_from<T>(M == -INFINITY ? 0.0f : num / den);
    }
}

/* ---- host ------------------------------------------------------------------------- */

static cudaError_t qa_dispatch(cudaStream_t s, const pcu_qkv_attn *a, bool *fits);

static bool qa_aligned(const void *p) { return ((uintptr_t)p & 15u) == 0; }

bool pcu_qkv_attn_fits(const pcu_qkv_attn *a) {
    const int es = 2;
    if ((a->dtype != PETREL_DTYPE_F16 && a->dtype != PETREL_DTYPE_BF16) ||
        (a->fmt != PT_QFMT_INT4 && a->fmt != PT_QFMT_INT4S) || (a->G != 32 && a->G != 64 && a->G != 128))
        return false;
    if (a->K <= 0 || a->K % 256 || a->K > 16384 || (a->K / a->G) % 16) return false;
    if ((a->E != 64 && a->E != 128) || a->Hkv <= 0 || a->Hq % a->Hkv || a->Hq / a->Hkv > QA_WARPS || a->S <= 0)
        return false;
    if (a->rcos && (!a->rsin || a->R <= 0 || a->R % 2 || a->R > a->E)) return false;
    if (a->mask && a->mask_dtype != PETREL_DTYPE_BOOL && a->mask_dtype != PETREL_DTYPE_F32 &&
        a->mask_dtype != PETREL_DTYPE_F16 && a->mask_dtype != PETREL_DTYPE_BF16)
        return false;
    if (a->pos_dt != PETREL_DTYPE_I64 && a->pos_dt != PETREL_DTYPE_I32 && a->pos_dt != PETREL_DTYPE_I16) return false;
    if (!qa_aligned(a->x) || (a->norm_w && !qa_aligned(a->norm_w)) || !qa_aligned(a->kc) || !qa_aligned(a->vc) ||
        (a->k_ss * es) % 16 || (a->v_ss * es) % 16 || (a->k_hs * es) % 16 || (a->v_hs * es) % 16)
        return false;
    for (int i = 0; i < 3; i++)
        if (!qa_aligned(a->codes[i]) || !qa_aligned(a->scales[i]) ||
            (a->fmt == PT_QFMT_INT4 && (!a->zeros[i] || !qa_aligned(a->zeros[i]))))
            return false;
    const qa_layout L = qa_layout_of(a->K, a->G, a->Hq / a->Hkv, a->E, a->fmt == PT_QFMT_INT4, es);
    bool fits = false;
    return L.total <= QA_SMEM_MAX && qa_dispatch(0, a, &fits) == cudaSuccess && fits;
}

/* The launch of a's instance k (its attributes set); *fits: a cluster of
 * QA_CL blocks with this shared memory fits on the GPU (an occupancy
 * query: false on parts with smaller GPCs, whose callers then take the
 * two launches). */
template <typename T, int E, bool NORM, bool ASYM>
static cudaError_t qa_go(cudaStream_t s, const pcu_qkv_attn *a, bool *fits) {
    const qa_layout L = qa_layout_of(a->K, a->G, a->Hq / a->Hkv, E, ASYM, (int)sizeof(T));
    void (*k)(pcu_qkv_attn) = qkv_attn_kernel<T, E, NORM, ASYM>;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L.total);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e != cudaSuccess) return e;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)a->Hkv * QA_CL, 1, 1);
    cfg.blockDim = dim3(QA_THREADS, 1, 1);
    cfg.dynamicSmemBytes = L.total;
    cfg.stream = s;
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = QA_CL, at[0].val.clusterDim.y = 1, at[0].val.clusterDim.z = 1;
    at[1].id = cudaLaunchAttributeProgrammaticStreamSerialization; /* see dn_launch_pdl */
    at[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = 2;
    if (fits) {
        int n = 0;
        cfg.attrs = at, cfg.numAttrs = 1; /* the cluster's shape only */
        e = cudaOccupancyMaxActiveClusters(&n, k, &cfg);
        *fits = e == cudaSuccess && n >= 1;
        return e;
    }
    e = cudaLaunchKernelEx(&cfg, k, *a);
    return e != cudaSuccess ? e : cudaGetLastError();
}

template <typename T, int E> static cudaError_t qa_go_e(cudaStream_t s, const pcu_qkv_attn *a, bool *fits) {
    const bool asym = a->fmt == PT_QFMT_INT4;
    if (a->norm_w) return asym ? qa_go<T, E, true, true>(s, a, fits) : qa_go<T, E, true, false>(s, a, fits);
    return asym ? qa_go<T, E, false, true>(s, a, fits) : qa_go<T, E, false, false>(s, a, fits);
}

template <typename T> static cudaError_t qa_go_t(cudaStream_t s, const pcu_qkv_attn *a, bool *fits) {
    return a->E == 64 ? qa_go_e<T, 64>(s, a, fits) : qa_go_e<T, 128>(s, a, fits);
}

static cudaError_t qa_dispatch(cudaStream_t s, const pcu_qkv_attn *a, bool *fits) {
    return a->dtype == PETREL_DTYPE_BF16 ? qa_go_t<__nv_bfloat16>(s, a, fits) : qa_go_t<__half>(s, a, fits);
}

cudaError_t pcu_qkv_attn_launch(cudaStream_t s, const pcu_qkv_attn *a) {
    if (!pcu_qkv_attn_fits(a)) return cudaErrorInvalidValue;
    return qa_dispatch(s, a, NULL);
}
