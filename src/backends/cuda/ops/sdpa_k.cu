/*
** sdpa_k.cu -- the attention kernel behind aten SDPA and petrel.sdpa_cache
** (see sdpa_k.h for what it computes).
**
** Work split.  The query rows that read one k/v matrix -- the L rows of
** each of the `group` query heads of a GQA group -- form R = group * L rows.
** A block of 4 warps takes up to 4 of them, one row per warp, so K and V
** are read once per block for up to 4 rows (in decode, the 4 query heads of
** a Llama KV head share one read).  Small blocks keep many of them
** resident per multiprocessor.  Along the keys, a block walks tiles of
** TK keys: all its threads load the K and V tile into shared memory (as
** float), then each row's warp scores the tile -- lane j takes key j -- and
** folds it into its running softmax (max m, sum l, weighted values acc:
** the "online softmax" of flash attention, in fp32).  Lane t of a warp
** owns value columns t, t + 32, ..., so acc lives in NV = Ev / 32
** registers.
**
** Latency.  Every global read is issued in batches that are in flight
** together: a thread loads its share of a tile (up to ATTN_SLOTS 16-byte
** vectors, or single elements when rows are not 16-byte aligned) into
** registers first, and the next tile's loads are issued before the current
** tile is computed.  The mask of up to ATTN_MC keys is read in one batch
** too, before any tile of those keys.
**
** Masking.  From the mask (causal, a false bool, a -inf float) the block
** knows which tiles no row of it may see; those are skipped without
** reading K or V, so the empty end of a static KV cache costs only its
** mask reads.  Masked keys score -inf and add exactly zero.
**
** Split keys ("flash decoding").  With too few blocks to fill the GPU
** (decode: a handful of KV heads), the key range is split over gridDim.y;
** each split writes its (m, l, acc) to scratch and a combine kernel merges
** them: out = sum_z e^(m_z - M) acc_z / sum_z e^(m_z - M) l_z.  The grid
** depends on shapes only, so the launch can be captured in a CUDA graph.
*/
#include <math.h>

#include "dense_k.cuh"
#include "sdpa_k.h"

#define ATTN_THREADS 128          /* 4 warps: up to 4 query rows per block */
#define ATTN_ROWS (ATTN_THREADS / 32)
#define ATTN_SLOTS 4              /* loads per thread per tile */
#define ATTN_MC 128               /* keys whose mask is read in one batch */
#define ATTN_COMBINE_THREADS 256
#define ATTN_SMEM_MAX (48 * 1024) /* without opting in to more */

/* The launch geometry, from shapes alone. */
typedef struct attn_grid {
    int qb;          /* query rows per block (<= ATTN_ROWS) */
    int tk;          /* keys per tile */
    int V;           /* elements per load: 16 bytes' worth, or 1 */
    int64_t R;       /* rows sharing one k/v matrix: group * L */
    int64_t nrowblk; /* blocks over those rows */
    int64_t nkv;     /* k/v matrices: output batches / group */
    int64_t nsplit;  /* key splits (gridDim.y) */
    int64_t kps;     /* keys per split, a multiple of tk */
    size_t smem;     /* dynamic shared memory bytes */
} attn_grid;

/* Shared memory: ks (tk, E + 1), vs (tk, Ev + 1), qs (qb, E), madd (qb,
 * MC), then one int per tile of a mask batch. */
static size_t attn_smem(const pcu_attn *a, int qb, int tk) {
    return sizeof(float) * (size_t)(tk * (a->E + 1) + tk * (a->Ev + 1) + qb * a->E + qb * ATTN_MC) +
           sizeof(int) * (size_t)(ATTN_MC / tk);
}

static int attn_elsize(int dt) { return dt == PETREL_DTYPE_F32 ? 4 : 2; }

/* Can K and V be read as 16-byte vectors?  Rows contiguous, and every row
 * start (base, batch and row strides) 16-byte aligned. */
static bool attn_vec_ok(const pcu_attn *a) {
    int64_t es = attn_elsize(a->dtype), V = 16 / es;
    bool ok = a->k_se == 1 && a->v_se == 1 && a->E % V == 0 && a->Ev % V == 0 && (a->k_ss * es) % 16 == 0 &&
              (a->v_ss * es) % 16 == 0 && (uintptr_t)a->k % 16 == 0 && (uintptr_t)a->v % 16 == 0;
    for (int d = 0; d < a->nb; d++) ok = ok && (a->kb[d] * es) % 16 == 0 && (a->vb[d] * es) % 16 == 0;
    return ok;
}

static attn_grid attn_plan(const pcu_attn *a, int sm_count) {
    attn_grid g;
    int64_t nbatch = 1;
    for (int d = 0; d < a->nb; d++) nbatch *= a->bshape[d];
    g.R = a->group * a->L;
    g.qb = g.R >= ATTN_ROWS ? ATTN_ROWS : g.R < 1 ? 1 : (int)g.R;
    g.nkv = nbatch / a->group;
    g.nrowblk = (g.R + g.qb - 1) / g.qb;
    g.V = attn_vec_ok(a) ? 16 / attn_elsize(a->dtype) : 1;
    /* the largest tile whose loads fit the slots and whose floats fit the
     * shared memory */
    g.tk = 32;
    while (g.tk > 1 && (attn_smem(a, g.qb, g.tk) > ATTN_SMEM_MAX ||
                        g.tk * (a->E + a->Ev) / g.V > (int64_t)ATTN_SLOTS * ATTN_THREADS))
        g.tk /= 2;
    g.smem = attn_smem(a, g.qb, g.tk);
    /* split the keys when the grid would leave multiprocessors idle:
     * aim at about eight blocks per multiprocessor, all resident at once
     * (the kernel's time is mostly instruction latency: it needs warps) */
    int64_t blocks = g.nrowblk * g.nkv, ntiles = (a->S + g.tk - 1) / g.tk;
    g.nsplit = 1;
    if (blocks < 2 * sm_count) {
        int64_t want = (8 * sm_count + blocks - 1) / blocks, most = ATTN_SMEM_MAX / (sizeof(float) * (a->Ev + 2));
        g.nsplit = want < ntiles ? want : ntiles;
        if (g.nsplit > most) g.nsplit = most; /* the combine stages every partial of a row */
    }
    int64_t per = g.nsplit > 0 ? (a->S + g.nsplit - 1) / g.nsplit : 0;
    g.kps = (per + g.tk - 1) / g.tk * g.tk;
    g.nsplit = g.kps > 0 ? (a->S + g.kps - 1) / g.kps : 1;
    return g;
}

/* The per-block view of the operands: where its k/v matrices start. */
typedef struct attn_tile_src {
    const void *k, *v; /* matrix starts */
    int64_t k_ss, k_se, v_ss, v_se;
    int E, Ev, tk;
} attn_tile_src;

/* Issue this thread's loads of the tile of keys [j0, j0 + nk): "chunks" of
 * V elements (one 16-byte vector, or one element when V == 1) are numbered
 * K rows first, then V rows; thread t takes chunks t, t + ATTN_THREADS, ...
 * Rows past nk read as zeros. */
template <typename T, int V>
__device__ __forceinline__ void attn_tile_issue(uint4 *buf, const attn_tile_src &s, int64_t j0, int nk) {
    const int cpk = s.E / V, cpv = s.Ev / V, nck = s.tk * cpk, total = nck + s.tk * cpv;
#pragma unroll
    for (int u = 0; u < ATTN_SLOTS; u++) {
        int c = threadIdx.x + u * ATTN_THREADS;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (c < total) {
            bool isk = c < nck;
            int cc = isk ? c : c - nck, cp = isk ? cpk : cpv, jj = cc / cp, col = (cc - jj * cp) * V;
            if (jj < nk) {
                const T *p = isk ? (const T *)s.k + (j0 + jj) * s.k_ss + col * s.k_se
                                 : (const T *)s.v + (j0 + jj) * s.v_ss + col * s.v_se;
                if (V > 1) val = __ldg((const uint4 *)p);
                else val.x = __float_as_uint(dn_f32(*p));
            }
        }
        buf[u] = val;
    }
}

/* Store the loaded chunks into the float tiles ks (tk, E + 1), vs (tk, Ev + 1). */
template <typename T, int V>
__device__ __forceinline__ void attn_tile_store(const uint4 *buf, const attn_tile_src &s, float *ks, float *vs) {
    const int cpk = s.E / V, cpv = s.Ev / V, nck = s.tk * cpk, total = nck + s.tk * cpv;
#pragma unroll
    for (int u = 0; u < ATTN_SLOTS; u++) {
        int c = threadIdx.x + u * ATTN_THREADS;
        if (c >= total) continue;
        bool isk = c < nck;
        int cc = isk ? c : c - nck, cp = isk ? cpk : cpv, jj = cc / cp, col = (cc - jj * cp) * V;
        float *dst = isk ? ks + jj * (s.E + 1) + col : vs + jj * (s.Ev + 1) + col;
        if (V > 1) {
            float f[V];
            dn_unpack(buf[u], f, T());
#pragma unroll
            for (int e = 0; e < V; e++) dst[e] = f[e];
        } else {
            dst[0] = __uint_as_float(buf[u].x);
        }
    }
}

/* The next tile index after t that some row of the block may see
 * (tileok has one flag per tile of the current mask batch); nt if none. */
__device__ __forceinline__ int attn_next_tile(const int *tileok, int t, int nt) {
    for (t++; t < nt && !tileok[t]; t++) {
    }
    return t;
}

template <typename T, int NV, int V>
__global__ void __launch_bounds__(ATTN_THREADS, 8) attn_kernel(pcu_attn a, attn_grid g, float *part) {
    extern __shared__ float sm[];
    const int E = (int)a.E, Ev = (int)a.Ev, tk = g.tk, qb = g.qb;
    float *ks = sm;                        /* (tk, E + 1): the pad keeps lanes on distinct banks */
    float *vs = ks + tk * (E + 1);         /* (tk, Ev + 1) */
    float *qs = vs + tk * (Ev + 1);        /* (qb, E): each row's query */
    float *madd = qs + qb * E;             /* (qb, MC): mask term per key, -inf = excluded */
    int *tileok = (int *)(madd + qb * ATTN_MC); /* (MC / tk) */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t kvb = blockIdx.x / g.nrowblk, rb = blockIdx.x % g.nrowblk;

    /* offsets of every operand at the output batch index of the block's
     * first query head (the head is the last, innermost batch dim) */
    int64_t koff = 0, voff = 0, qoff = 0, moff = 0, oflat = 0, rem = kvb, mul = 1;
    for (int d = a.nb - 1; d >= 0; d--) {
        bool head = d == a.nb - 1;
        int64_t sz = head ? a.bshape[d] / a.group : a.bshape[d];
        int64_t x = rem % sz;
        rem /= sz;
        if (head) x *= a.group;
        koff += (head ? x / a.kdiv : x) * a.kb[d];
        voff += (head ? x / a.vdiv : x) * a.vb[d];
        qoff += x * a.qb[d], moff += x * a.mb[d];
        oflat += x * mul, mul *= a.bshape[d];
    }
    const attn_tile_src src = {(const T *)a.k + koff, (const T *)a.v + voff, a.k_ss, a.k_se, a.v_ss, a.v_se,
                               E, Ev, tk};

    /* this warp's row: query head gq of the group, query position i */
    const int64_t r = rb * qb + warp;
    const bool active = warp < qb && r < g.R;
    const int64_t gq = active ? r / a.L : 0, i = active ? r % a.L : 0;
    const int64_t hq = a.nb > 0 ? a.qb[a.nb - 1] : 0, hm = a.nb > 0 ? a.mb[a.nb - 1] : 0;
    const T *q = (const T *)a.q + qoff + gq * hq + i * a.q_sl;
    const int64_t mrow = moff + gq * hm + i * a.m_sl;
    const int64_t orow = (oflat + gq) * a.L + i; /* the head is the last batch dim */
    float *qw = qs + warp * E, *mw = madd + warp * ATTN_MC;
    if (warp < qb)
        for (int e = lane; e < E; e += 32) qw[e] = active ? dn_f32(q[e * a.q_se]) : 0.0f;

    const bool mbool = a.mask_dtype == PETREL_DTYPE_BOOL;
    float m = -INFINITY, l = 0.0f, acc[NV];
#pragma unroll
    for (int t = 0; t < NV; t++) acc[t] = 0.0f;
    const int64_t j_begin = blockIdx.y * g.kps;
    const int64_t j_end = j_begin + g.kps < a.S ? j_begin + g.kps : a.S;
    for (int64_t c0 = j_begin; c0 < j_end; c0 += ATTN_MC) {
        const int cn = (int)(j_end - c0 < ATTN_MC ? j_end - c0 : ATTN_MC), nt = (cn + tk - 1) / tk;
        /* the mask term of every (row, key) of this batch, all reads at once */
        for (int t = threadIdx.x; t < nt; t += ATTN_THREADS) tileok[t] = 0;
        if (warp < qb) {
            float mv[ATTN_MC / 32];
#pragma unroll
            for (int u = 0; u < ATTN_MC / 32; u++) {
                int jj = lane + 32 * u;
                int64_t j = c0 + jj;
                bool see = active && jj < cn && !(a.causal && j > i);
                mv[u] = see ? (a.mask ? dn_load(a.mask, a.mask_dtype, mrow + j * a.m_ss) : 0.0f) : -INFINITY;
            }
#pragma unroll
            for (int u = 0; u < ATTN_MC / 32; u++)
                mw[lane + 32 * u] = mbool ? (mv[u] == -INFINITY || mv[u] == 0.0f ? -INFINITY : 0.0f) : mv[u];
        }
        __syncthreads();
        for (int jj = threadIdx.x; jj < cn; jj += ATTN_THREADS) {
            bool any = false;
            for (int w = 0; w < qb; w++) any |= madd[w * ATTN_MC + jj] != -INFINITY;
            if (any) tileok[jj / tk] = 1; /* benign race: every writer stores 1 */
        }
        __syncthreads();

        uint4 buf[ATTN_SLOTS];
        int t = attn_next_tile(tileok, -1, nt);
        if (t < nt) attn_tile_issue<T, V>(buf, src, c0 + (int64_t)t * tk, min(tk, cn - t * tk));
        while (t < nt) {
            const int nk = min(tk, cn - t * tk);
            attn_tile_store<T, V>(buf, src, ks, vs);
            __syncthreads();
            const int tn = attn_next_tile(tileok, t, nt);
            if (tn < nt) attn_tile_issue<T, V>(buf, src, c0 + (int64_t)tn * tk, min(tk, cn - tn * tk));
            if (active) {
                float md = lane < nk ? mw[t * tk + lane] : -INFINITY, s = -INFINITY;
                if (md != -INFINITY) {
                    const float *kr = ks + lane * (E + 1);
                    float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f; /* independent chains */
                    int e = 0;
#pragma unroll 4
                    for (; e + 4 <= E; e += 4) {
                        d0 = fmaf(qw[e], kr[e], d0), d1 = fmaf(qw[e + 1], kr[e + 1], d1);
                        d2 = fmaf(qw[e + 2], kr[e + 2], d2), d3 = fmaf(qw[e + 3], kr[e + 3], d3);
                    }
                    for (; e < E; e++) d0 = fmaf(qw[e], kr[e], d0);
                    s = ((d0 + d1) + (d2 + d3)) * a.scale + md;
                }
                float mn = dn_nanmax(m, dn_warp_nanmax(s));
                if (mn != -INFINITY) { /* else every key so far is masked: nothing to add */
                    float corr = expf(m - mn), p = expf(s - mn); /* m = -inf gives corr 0; NaN sticks */
                    l = l * corr + dn_warp_sum(p);
#pragma unroll
                    for (int u = 0; u < NV; u++) acc[u] *= corr;
#pragma unroll 4
                    for (int jj = 0; jj < nk; jj++) {
                        float pj = __shfl_sync(0xffffffffu, p, jj);
                        if (pj == 0.0f) continue; /* masked key (uniform across the warp) */
#pragma unroll
                        for (int u = 0; u < NV; u++) {
                            int e = lane + 32 * u;
                            if (e < Ev) acc[u] = fmaf(pj, vs[jj * (Ev + 1) + e], acc[u]);
                        }
                    }
                    m = mn;
                }
            }
            __syncthreads();
            t = tn;
        }
        __syncthreads(); /* madd / tileok are rewritten by the next batch */
    }
    if (!active) return;

    if (gridDim.y == 1) {
        T *o = (T *)a.out + orow * Ev;
#pragma unroll
        for (int u = 0; u < NV; u++) {
            int e = lane + 32 * u;
            if (e < Ev) o[e] = dn_from<T>(m == -INFINITY ? 0.0f : acc[u] / l);
        }
    } else { /* partial result of this split: (m, l, acc[Ev]) */
        float *pp = part + (orow * gridDim.y + blockIdx.y) * (Ev + 2);
        if (lane == 0) pp[0] = m, pp[1] = l;
#pragma unroll
        for (int u = 0; u < NV; u++) {
            int e = lane + 32 * u;
            if (e < Ev) pp[2 + e] = acc[u];
        }
    }
}

/* Merge the splits of one output row (block): all its partials are first
 * staged in shared memory with every load in flight, then
 * out[e] = sum_z w_z acc_z[e] / sum_z w_z l_z with w_z = e^(m_z - M). */
template <typename T>
__global__ void __launch_bounds__(ATTN_COMBINE_THREADS) attn_combine(const float *part, T *out, int nsplit, int Ev) {
    extern __shared__ float sp[]; /* (nsplit, Ev + 2): m, l, acc */
    __shared__ float stat[2];     /* M, sum_z w_z l_z */
    const int row_len = Ev + 2, n = nsplit * row_len;
    const float *pp = part + (int64_t)blockIdx.x * n;
    const int nt = ATTN_COMBINE_THREADS;
    for (int x0 = threadIdx.x; x0 < n; x0 += nt * 16) {
        float v[16];
#pragma unroll
        for (int u = 0; u < 16; u++) v[u] = x0 + u * nt < n ? pp[x0 + u * nt] : 0.0f;
#pragma unroll
        for (int u = 0; u < 16; u++)
            if (x0 + u * nt < n) sp[x0 + u * nt] = v[u];
    }
    __syncthreads();
    if (threadIdx.x < 32) { /* one warp: the max, the weights (over m_z), the denominator */
        float M = -INFINITY;
        for (int z = threadIdx.x; z < nsplit; z += 32) M = dn_nanmax(M, sp[z * row_len]);
        M = dn_warp_nanmax(M);
        float den = 0.0f;
        for (int z = threadIdx.x; z < nsplit; z += 32) {
            float mz = sp[z * row_len];
            float w = (M == -INFINITY || mz == -INFINITY) ? 0.0f : expf(mz - M); /* fully masked splits add 0 */
            den = fmaf(w, sp[z * row_len + 1], den);
            sp[z * row_len] = w;
        }
        den = dn_warp_sum(den);
        if (threadIdx.x == 0) stat[0] = M, stat[1] = den;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < Ev; e += nt) {
        float num = 0.0f;
        for (int z = 0; z < nsplit; z++) num = fmaf(sp[z * row_len], sp[z * row_len + 2 + e], num);
        out[(int64_t)blockIdx.x * Ev + e] = dn_from<T>(stat[0] == -INFINITY ? 0.0f : num / stat[1]);
    }
}

extern "C" size_t pcu_attn_scratch(const pcu_attn *a, int sm_count) {
    attn_grid g = attn_plan(a, sm_count);
    if (g.nsplit <= 1) return 0;
    return sizeof(float) * (size_t)(g.nkv * g.R * g.nsplit * (a->Ev + 2));
}

template <typename T, int NV>
static cudaError_t attn_go(cudaStream_t s, const pcu_attn *a, const attn_grid *g, float *part) {
    dim3 grid((unsigned)(g->nrowblk * g->nkv), (unsigned)g->nsplit);
    if (g->V > 1) attn_kernel<T, NV, 16 / sizeof(T)><<<grid, ATTN_THREADS, g->smem, s>>>(*a, *g, part);
    else attn_kernel<T, NV, 1><<<grid, ATTN_THREADS, g->smem, s>>>(*a, *g, part);
    if (g->nsplit > 1)
        attn_combine<T><<<(unsigned)(g->nkv * g->R), ATTN_COMBINE_THREADS, sizeof(float) * g->nsplit * (a->Ev + 2), s>>>(
            part, (T *)a->out, (int)g->nsplit, (int)a->Ev);
    return cudaGetLastError();
}

template <typename T> static cudaError_t attn_nv(cudaStream_t s, const pcu_attn *a, const attn_grid *g, float *part) {
    if (a->Ev <= 32) return attn_go<T, 1>(s, a, g, part);
    if (a->Ev <= 64) return attn_go<T, 2>(s, a, g, part);
    if (a->Ev <= 128) return attn_go<T, 4>(s, a, g, part);
    return attn_go<T, 8>(s, a, g, part);
}

extern "C" bool pcu_attn_fits(const pcu_attn *a, int sm_count) {
    attn_grid g = attn_plan(a, sm_count);
    return a->Ev <= PCU_ATTN_MAX_EV && g.smem <= ATTN_SMEM_MAX && g.nrowblk * g.nkv <= 0x7fffffff &&
           g.nkv * g.R <= 0x7fffffff && g.nsplit <= 65535;
}

extern "C" cudaError_t pcu_attn_launch(cudaStream_t s, const pcu_attn *a, int sm_count, void *scratch) {
    if (!pcu_attn_fits(a, sm_count)) return cudaErrorInvalidValue;
    attn_grid g = attn_plan(a, sm_count);
    if (g.nrowblk * g.nkv == 0) return cudaSuccess;
    switch (a->dtype) {
    case PETREL_DTYPE_F32: return attn_nv<float>(s, a, &g, (float *)scratch);
    case PETREL_DTYPE_F16: return attn_nv<__half>(s, a, &g, (float *)scratch);
    case PETREL_DTYPE_BF16: return attn_nv<__nv_bfloat16>(s, a, &g, (float *)scratch);
    default: return cudaErrorInvalidValue;
    }
}
