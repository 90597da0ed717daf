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
**
** Prefill on tensor cores (attn_mma_kernel).  f16 / bf16 prefills of at
** least 16 query rows with head dims of 64, 128 or 256 take a flash-attention
** kernel on mma.m16n8k16 instead: 64 query rows per block, 64-key tiles
** copied with cp.async (the next in flight during the current one), the
** online softmax in fp32 and P rounded to the dtype for its product with
** V.  Masks become a per-tile map first (see its section below).  On an
** H200, Llama-3.2-1B bf16 prefills 2,048 tokens at 129,000 tokens/s with
** it against 23,200 with the kernel above (bench/RESULTS.md, 2026-12-04,
** tensor-core prefill).
**
** Decode (attn_decode_kernel).  A few query rows (R <= 8: a decode step's
** GQA group) against a k/v of up to 8192 keys, mostly masked (a static KV
** cache), take a kernel of their own.  A warp owns 32 consecutive keys,
** lane j key j: the lane reads its key's mask terms, and only when some
** row sees the key, its K row (scores need no shuffles) while the warp
** reads the V rows of its visible keys as 16-byte chunks; one round trip
** for the mask, one for K and V, every load of each in flight together.
** A masked key costs its mask read only, so the time follows the number
** of valid positions, not the cache's size.  The warps of a block and the
** blocks of a thread block cluster (gridDim.y, at most 8) take
** interleaved 32-key chunks (a group of at most two query rows takes one
** warp per row and chunk, and so does a larger one while the executor's
** range of positions, keys_below, fits one pass of that: attn_dec_plan);
** their partial softmaxes merge in shared memory, then every block sends
** its merged partial into block 0's shared memory (st.async, counted by an
** mbarrier there) and block 0 merges them:
** no scratch, no second kernel, and no cluster barrier after the loop (the
** one that publishes the mbarrier is arrived at in the prologue and waited
** for after the loop).  A warp's rows take their softmax steps side by
** side, so the rows' warp reductions overlap.  Both measured on an H200
** (bench_kernels, Llama's shape, 128 / 2048 valid positions): 8.6 / 10.3
** -> 7.4 / 9.1 us per launch in a graph; the trace build's softmax of four
** rows 2,118 -> 1,123 cycles.  For petrel.sdpa_cache's decode
** step it also writes the new key and value into the caches: the lane
** that owns key pos reads the new row instead of the cache row and stores
** it to the cache, so the step needs no cache-write kernel either.  Its
** rope and q/k norm are applied in the prologue, as q and the new key row
** are loaded: every block normalizes (one block barrier for the rows'
** sums of squares) and rotates them itself.  f16 / bf16 rows of more than
** 16 chunks of 16 bytes (Gemma 3's head dim of 256) take the kernel's two-lanes-
** per-key form (LPK 2): a chunk is 16 keys, lanes l and l + 16 each hold
** half of key l's K row and add their halves of the score with one
** shuffle, so the registers per lane stay those of a 128-element row; the
** one-lane form's machine code is unchanged by it (the template's other
** instances).  H200, Gemma-3-1B bf16 decode 348 -> 518-561 tok/s
** (bench/RESULTS.md, 2026-12-04, head dim 256).
**
** Measured and not kept (H200, bench_kernels, us per launch in a graph):
** staging each chunk's K and V rows in shared memory (cp.async) and
** running the scores and values as loops over it, on the guess that the
** unrolled kernel waits on instruction fetch: slower (Llama's shape 8.9
** against 8.6 at 128 valid positions, 11.2 against 10.3 at 2048; Qwen3's
** 12.8 / 18.5 against 10.8 / 13.0 at 128 / 1024).  Also not kept: below
** the executor's range, one block per row block without a cluster, its
** cache rows copied into shared memory before the dependent-launch wait
** (8.4 against 6.6 us at 128 positions; Llama-3.2-1B int4 1,357 against
** 1,781 tok/s).  In Llama-3.2-1B's
** decode step this kernel costs about 10 us per layer: the step without
** its work ran at 1,288 tok/s against 1,067.
*/
#include <cooperative_groups.h>
#include <float.h>
#include <math.h>

#include "dense_k.cuh"
#include "sdpa_k.h"

namespace cg = cooperative_groups;

#ifdef PCU_ATTN_TRACE /* phase stamps of the decode kernel, for tests/gpu/bench_kernels.cu only */
#define TR_N 15   /* 0 start, 1-7 phases, 8 end (globaltimer); 9-12 inside warp 0's first chunk; 13-14 prologue */
#define TR_END 8
__device__ long long tr_buf[1024][TR_N];
#define TR(i)                                                                                      \
    do {                                                                                           \
        if (threadIdx.x == 0 && blockIdx.x * gridDim.y + blockIdx.y < 1024) {                      \
            long long t_;                                                                          \
            if ((i) == 0 || (i) == TR_END) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_));  \
            else t_ = clock64();                                                                   \
            tr_buf[blockIdx.x * gridDim.y + blockIdx.y][i] = t_;                                   \
        }                                                                                          \
    } while (0)
/* a stamp once the 32-bit value v is there (waits for the load or the
 * arithmetic that makes it), in warp 0's first chunk only */
#define TRV(i, v, first)                                                                           \
    do {                                                                                           \
        if ((first) && threadIdx.x == 0 && blockIdx.x * gridDim.y + blockIdx.y < 1024) {           \
            unsigned u_;                                                                           \
            asm volatile("mov.b32 %0, %1;" : "=r"(u_) : "r"((unsigned)(v)));                       \
            long long t_ = clock64();                                                              \
            tr_buf[blockIdx.x * gridDim.y + blockIdx.y][i] = t_ + (long long)(u_ & 0u);            \
        }                                                                                          \
    } while (0)
#else
#define TR(i) ((void)0)
#define TRV(i, v, first) ((void)0)
#endif

#define ATTN_THREADS 128          /* 4 warps: up to 4 query rows per block */
#define ATTN_ROWS (ATTN_THREADS / 32)
#define ATTN_SLOTS 4              /* loads per thread per tile */
#define ATTN_MC 128               /* keys whose mask is read in one batch */
#define ATTN_COMBINE_THREADS 256
#define ATTN_SMEM_MAX (48 * 1024) /* without opting in to more */
#define DEC_WARPS 8               /* decode: warps per block, 32 keys each */
#define DEC_CLUSTER 8             /* decode: blocks per cluster, the portable maximum */
#define DEC_MAXC 16               /* decode: 16-byte chunks per k or v row, at most */
#define DEC_MAX_ROWS (2 * ATTN_ROWS) /* decode: query rows per k/v matrix, at most */
static_assert(ATTN_ROWS <= DEC_WARPS, "a decode block holds a warp for each of its rows");
#define DEC_MAX_KEYS (4 * DEC_CLUSTER * DEC_WARPS * 32) /* decode: 4 passes; longer k/v split wider */
#define DEC_SMEM_MAX (160 * 1024) /* decode: shared memory, opted in to past 48 KB (head dim 256) */

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
    bool dec;        /* run the decode kernel (its fields below) */
    int dw;          /* warps per block */
    int dcl;         /* blocks per cluster = gridDim.y */
    int dmc;         /* register chunks per k / v row: 4, 8 or 16 */
    int drpw;        /* query rows per warp: ATTN_ROWS (all of the block's) or 1 */
    int dlpk;        /* lanes per key: 1, or 2 for rows past DEC_MAXC chunks (head dim 256) */
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

/* Lanes per key of the decode kernel: 2 when a k or v row has more than
 * DEC_MAXC 16-byte chunks (a head dim of 256 at 16 bits): each lane of a
 * pair then holds half of the key's K row and a chunk is 16 keys.  f16 /
 * bf16 only (the form checked on a GPU: Gemma 3's rows); fp32 rows that
 * long (head dim 128) keep the split kernel. */
static int attn_dec_lpk(const pcu_attn *a, const attn_grid *g) {
    if (a->dtype == PETREL_DTYPE_F32) return 1;
    return a->E / g->V > DEC_MAXC || a->Ev / g->V > DEC_MAXC ? 2 : 1;
}

/* Can the decode kernel take the problem?  Few rows, rows that are whole
 * 16-byte vectors (at most DEC_MAXC of them per lane, a power of two for V
 * so that a warp's loads cover whole keys), a mask dtype it reads, and at
 * most DEC_MAX_KEYS keys: its one cluster per k/v matrix walks them in
 * passes, where the split kernel spreads a long k/v over the whole GPU. */
static bool attn_dec_ok(const pcu_attn *a, const attn_grid *g) {
    int64_t nck = a->E / g->V, ncv = a->Ev / g->V;
    bool mask_ok = !a->mask || a->mask_dtype == PETREL_DTYPE_BOOL || a->mask_dtype == PETREL_DTYPE_F32 ||
                   a->mask_dtype == PETREL_DTYPE_F16 || a->mask_dtype == PETREL_DTYPE_BF16;
    bool rows_ok = attn_dec_lpk(a, g) == 1
                       ? nck >= 1 && nck <= DEC_MAXC && ncv >= 1 && ncv <= DEC_MAXC
                       : nck % 2 == 0 && nck / 2 <= DEC_MAXC && ncv >= 2 && ncv <= 2 * DEC_MAXC;
    /* only with the cache write folded in (a->pos): the only form checked on
     * a GPU so far; a plain call takes the split kernel */
    return a->pos && g->V > 1 && g->R <= DEC_MAX_ROWS && a->S > 0 && a->S <= DEC_MAX_KEYS && mask_ok && rows_ok &&
           (ncv & (ncv - 1)) == 0;
}

/* The decode kernel's geometry: blocks of DEC_WARPS warps (those without
 * a chunk idle: a tiny cache), enough blocks (up to a cluster) that a
 * cache of 2048 keys takes one pass (two with one row per warp);
 * shared memory: qs (ATTN_ROWS, E), then (m, l, acc) of every warp's rows
 * and of every cluster block's (block 0's inbox), its mbarrier.  A group
 * of at most two rows takes one row per warp: its loop is what few warps
 * run at short contexts (H200, Qwen3-0.6B's
 * shape: 15.2 -> 10.8 us at 128 valid positions, 15.9 -> 13.0 at 1024);
 * Llama's four rows stay together, as one row per warp took four times
 * the passes at 2048 positions (10.8 -> 16.3 us). */
static void attn_dec_geom(attn_grid *g, int64_t nch, int rpw) { /* nch: chunks of 32 / dlpk keys */
    g->drpw = rpw;
    int64_t ngr = rpw == 1 ? g->qb : 1; /* warps per 32-key chunk */
    g->dw = DEC_WARPS;
    int64_t slots = g->dw / ngr, ncl = (nch + slots - 1) / slots;
    g->dcl = ncl < DEC_CLUSTER ? (int)ncl : DEC_CLUSTER;
}

static void attn_dec_plan(const pcu_attn *a, attn_grid *g) {
    g->dlpk = attn_dec_lpk(a, g);
    const int64_t kpc = 32 / g->dlpk, nch = (a->S + kpc - 1) / kpc;
    const int64_t mc = (a->E > a->Ev ? a->E / g->V : a->Ev / g->V) / g->dlpk;
    attn_dec_geom(g, nch, g->qb <= 2 ? 1 : ATTN_ROWS);
    /* Llama's four rows: one per warp too while the positions fit one pass
     * of that (H200, Llama-3.2-1B int4 with the quantized embedding: +4 %
     * at 128-384 positions; at 2048 its four passes take 14.3 us against
     * 8.7).  The range comes from the executor (keys_below), so each range
     * is its own captured graph: one kernel holding both paths and choosing
     * by the position lost 12 % in the decode step. */
    if (g->drpw > 1 && a->keys_below > 0) {
        attn_grid t = *g;
        attn_dec_geom(&t, nch, 1);
        if (a->keys_below <= (int64_t)(t.dw / t.qb) * t.dcl * kpc) *g = t; /* qb <= ATTN_ROWS <= dw */
    }
    g->dmc = mc <= 4 ? 4 : mc <= 8 ? 8 : 16;
    g->smem = sizeof(float) * (size_t)(ATTN_ROWS * a->E + (g->dw + g->dcl) * g->qb * (a->Ev + 2));
    g->smem = (g->smem + 7) / 8 * 8 + 8; /* the mbarrier of block 0's inbox */
    if (a->rcos) g->smem = (g->smem + 15) / 16 * 16 + (size_t)(a->E * attn_elsize(a->dtype)); /* the rotated new k */
    g->nsplit = 1, g->kps = a->S;
    g->dec = true;
}

static attn_grid attn_plan(const pcu_attn *a, int sm_count) {
    attn_grid g;
    g.dec = false, g.dw = g.dcl = g.dmc = g.drpw = g.dlpk = 0;
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
    if (attn_dec_ok(a, &g)) attn_dec_plan(a, &g);
    return g;
}

/* Offsets of the operands at the output batch index of the first query
 * head of k/v matrix kvb (the head is the last, innermost batch dim);
 * o is the flat output batch index.  Every index here is below the
 * output batch count, < 2^31 (pcu_attn_fits), so 32-bit division does --
 * 64-bit division would be most of a decode block's arithmetic. */
typedef struct attn_offs {
    int64_t k, v, q, m, o, kn, vn, rc;
} attn_offs;

__device__ __forceinline__ attn_offs attn_offsets(const pcu_attn &a, int64_t kvb) {
    attn_offs o = {0, 0, 0, 0, 0, 0, 0, 0};
    unsigned rem = (unsigned)kvb;
    int64_t mul = 1;
    for (int d = a.nb - 1; d >= 0; d--) {
        bool head = d == a.nb - 1;
        unsigned sz = head ? (unsigned)a.bshape[d] / (unsigned)a.group : (unsigned)a.bshape[d];
        unsigned x = rem % sz;
        rem /= sz;
        if (head) x *= (unsigned)a.group;
        unsigned xk = head ? x / (unsigned)a.kdiv : x, xv = head ? x / (unsigned)a.vdiv : x;
        o.k += xk * a.kb[d], o.kn += xk * a.knb[d];
        o.v += xv * a.vb[d], o.vn += xv * a.vnb[d];
        o.q += x * a.qb[d], o.m += x * a.mb[d], o.rc += x * a.rcb[d];
        o.o += x * mul, mul *= a.bshape[d];
    }
    return o;
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
    const int64_t kvb = blockIdx.x / (unsigned)g.nrowblk, rb = blockIdx.x % (unsigned)g.nrowblk;

    const attn_offs o = attn_offsets(a, kvb);
    const attn_tile_src src = {(const T *)a.k + o.k, (const T *)a.v + o.v, a.k_ss, a.k_se, a.v_ss, a.v_se,
                               E, Ev, tk};

    /* this warp's row: query head gq of the group, query position i */
    const int64_t r = rb * qb + warp;
    const bool active = warp < qb && r < g.R;
    const int64_t gq = active ? r / a.L : 0, i = active ? r % a.L : 0;
    const int64_t hq = a.nb > 0 ? a.qb[a.nb - 1] : 0, hm = a.nb > 0 ? a.mb[a.nb - 1] : 0;
    const T *q = (const T *)a.q + o.q + gq * hq + i * a.q_sl;
    const int64_t mrow = o.m + gq * hm + i * a.m_sl;
    const int64_t orow = (o.o + gq) * a.L + i; /* the head is the last batch dim */
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

/* ---- decode ------------------------------------------------------------------ */

/* A mask element as a score term: a bool keeps (0) or excludes (-inf). */
__device__ __forceinline__ float dec_term(float v) { return v; }
__device__ __forceinline__ float dec_term(__half v) { return __half2float(v); }
__device__ __forceinline__ float dec_term(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float dec_term(uint8_t v) { return v ? 0.0f : -INFINITY; }

template <typename M, int RPW>
__device__ __forceinline__ void dec_mask_rows(const pcu_attn &a, const int64_t *mrow, const bool *see, int64_t j,
                                              float *mv) {
    const M *mp = (const M *)a.mask;
#pragma unroll
    for (int r = 0; r < RPW; r++) mv[r] = see[r] ? dec_term(mp[mrow[r] + j * a.m_ss]) : -INFINITY;
}

/* The mask term of key j for each of a warp's RPW rows (-inf: the row
 * does not see it; rows from n on see nothing), its loads in flight
 * together. */
template <int RPW>
__device__ __forceinline__ void dec_mask(const pcu_attn &a, const int64_t *mrow, const int64_t *irow, int n,
                                         int64_t j, float *mv) {
    bool see[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) see[r] = r < n && j < a.S && !(a.causal && j > irow[r]);
    if (!a.mask) {
#pragma unroll
        for (int r = 0; r < RPW; r++) mv[r] = see[r] ? 0.0f : -INFINITY;
        return;
    }
    switch (a.mask_dtype) {
    case PETREL_DTYPE_BOOL: dec_mask_rows<uint8_t, RPW>(a, mrow, see, j, mv); break;
    case PETREL_DTYPE_F32: dec_mask_rows<float, RPW>(a, mrow, see, j, mv); break;
    case PETREL_DTYPE_F16: dec_mask_rows<__half, RPW>(a, mrow, see, j, mv); break;
    default: dec_mask_rows<__nv_bfloat16, RPW>(a, mrow, see, j, mv); break;
    }
}

/* Element e (value v, its rotate-half partner's xp) after petrel.rope with
 * the cos / sin row's elements c, s on the first R channels, in float
 * (products and the sum rounded to T, as the rope kernel does). */
template <typename T> __device__ __forceinline__ float dec_rot(float v, float xp, int e, int R, float c, float s) {
    if (e >= R) return v;
    const int h = R / 2;
    return dn_round<T>(dn_round<T>(v * c) + dn_round<T>((e < h ? -xp : xp) * s));
}

/* Channel e's partner in rotate-half (valid for e < R). */
__device__ __forceinline__ int dec_partner(int e, int R) { return e < R / 2 ? e + R / 2 : e - R / 2; }

/* petrel.rms_norm's element: x times 1/rms, rounded to T when nround,
 * times the weight (1 + w with add_one), rounded to T. */
template <typename T> __device__ __forceinline__ float dec_nrm(const pcu_attn &a, float x, float rstd, float w) {
    float v = x * rstd;
    if (a.nround) v = dn_round<T>(v);
    return dn_round<T>(v * (a.nadd_one ? 1.0f + w : w));
}

/* The prologue with qk_norm (and the rope): q's rows into qv (element
 * threadIdx.x + u * blockDim.x), the new k row into knr, both normalized
 * then rotated.  Every load is issued in one batch; the rows' sums of
 * squares meet in red (ATTN_ROWS + 1 per warp) over one block barrier. */
template <typename T, int QPT>
__device__ __forceinline__ void dec_norm_rope(const pcu_attn &a, const T *q, const int64_t *qrow, const T *kn, T *knr,
                                              const T *rc, const T *rs, float *red, float (*qv)[QPT]) {
    const int E = (int)a.E, R = (int)a.R, nw = blockDim.x >> 5, warp = threadIdx.x >> 5;
    const T *qw = (const T *)a.qnw, *kw = (const T *)a.knw;
    float xq[ATTN_ROWS][QPT], pq[ATTN_ROWS][QPT], xk[QPT], pk[QPT], wq[QPT], wqp[QPT], wk[QPT], wkp[QPT], cr[QPT],
        sr[QPT];
#pragma unroll
    for (int u = 0; u < QPT; u++) {
        int e = threadIdx.x + u * blockDim.x, pe = dec_partner(e, R);
        bool in = e < E, rot = e < R;
#pragma unroll
        for (int r = 0; r < ATTN_ROWS; r++) {
            xq[r][u] = in ? dn_f32(q[qrow[r] + e * a.q_se]) : 0.0f;
            pq[r][u] = rot ? dn_f32(q[qrow[r] + pe * a.q_se]) : 0.0f;
        }
        xk[u] = in ? dn_f32(kn[e]) : 0.0f, pk[u] = rot ? dn_f32(kn[pe]) : 0.0f;
        wq[u] = in ? dn_f32(qw[e]) : 0.0f, wqp[u] = rot ? dn_f32(qw[pe]) : 0.0f;
        wk[u] = in ? dn_f32(kw[e]) : 0.0f, wkp[u] = rot ? dn_f32(kw[pe]) : 0.0f;
        cr[u] = rot ? dn_f32(rc[e]) : 0.0f, sr[u] = rot ? dn_f32(rs[e]) : 0.0f;
    }
    TRV(13, __float_as_uint(xq[0][0]) ^ __float_as_uint(cr[0]), true);
    float ss[ATTN_ROWS + 1];
#pragma unroll
    for (int r = 0; r <= ATTN_ROWS; r++) {
        float t = 0.0f;
#pragma unroll
        for (int u = 0; u < QPT; u++) t = fmaf(r < ATTN_ROWS ? xq[r][u] : xk[u], r < ATTN_ROWS ? xq[r][u] : xk[u], t);
        ss[r] = dn_warp_sum(t);
    }
    if ((threadIdx.x & 31) == 0)
#pragma unroll
        for (int r = 0; r <= ATTN_ROWS; r++) red[r * nw + warp] = ss[r];
    __syncthreads();
    TR(14);
    /* lane r < ATTN_ROWS + 1 takes row r's 1/rms (the divisions and the
     * square root side by side, not one row after another), then every
     * lane reads them all */
    float rstd[ATTN_ROWS + 1];
    {
        const int lr = min(threadIdx.x & 31, ATTN_ROWS);
        float t = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) /* unrolled: the loads in flight together */
            if (w < nw) t += red[lr * nw + w];
        const float mine = 1.0f / sqrtf(t / (float)E + a.neps);
#pragma unroll
        for (int r = 0; r <= ATTN_ROWS; r++) rstd[r] = __shfl_sync(0xffffffffu, mine, r);
    }
#pragma unroll
    for (int u = 0; u < QPT; u++) {
        int e = threadIdx.x + u * blockDim.x;
#pragma unroll
        for (int r = 0; r < ATTN_ROWS; r++)
            qv[r][u] = e >= E ? 0.0f
                              : dec_rot<T>(dec_nrm<T>(a, xq[r][u], rstd[r], wq[u]),
                                           dec_nrm<T>(a, pq[r][u], rstd[r], wqp[u]), e, R, cr[u], sr[u]);
        if (e < E)
            knr[e] = dn_from<T>(dec_rot<T>(dec_nrm<T>(a, xk[u], rstd[ATTN_ROWS], wk[u]),
                                           dec_nrm<T>(a, pk[u], rstd[ATTN_ROWS], wkp[u]), e, R, cr[u], sr[u]));
    }
}

/* Cluster plumbing of the decode kernel (sm_90; addresses: dn_saddr,
 * dn_mapa in dense_k.cuh).  The mbarrier counts one arrival
 * and the bytes `tx` that the blocks' st.async sends (dec_send) bring; its
 * setup is published to the cluster by the fence and a relaxed cluster
 * arrive, waited for (dec_cluster_wait) before the first send. */
__device__ __forceinline__ void dec_mbar_init(unsigned mb, unsigned tx) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(mb) : "memory");
    asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;" ::"r"(mb), "r"(tx) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void dec_cluster_arrive_relaxed(void) {
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void dec_cluster_wait(void) { asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); }
__device__ __forceinline__ void dec_send(unsigned addr, float v, unsigned mb) {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];" ::"r"(addr),
                 "r"(__float_as_uint(v)), "r"(mb)
                 : "memory");
}
__device__ __forceinline__ void dec_mbar_arrive(unsigned mb) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(mb) : "memory");
}
__device__ __forceinline__ void dec_mbar_wait(unsigned mb) {
    asm volatile("{\n\t.reg .pred p;\n\tWAIT:\n\t"
                 "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%0], 0;\n\t"
                 "@!p bra WAIT;\n\t}" ::"r"(mb)
                 : "memory");
}

/* Grid (k/v matrices x row blocks, cluster blocks), clusters (1, dcl); a
 * block takes up to ATTN_ROWS rows (qb).  A warp takes RPW of them: all
 * (RPW = ATTN_ROWS, one row group) or one (RPW = 1, qb groups); warp w of
 * cluster block c takes group w % ngr and the 32-key chunks s * dcl + c +
 * n * (dw / ngr) * dcl, s = w / ngr.  MC bounds the 16-byte chunks per k /
 * v row (registers: lane j holds key j's K row; for V the warp's loads
 * cover kpl = 32 / ncv keys each, lane t holding chunk t % ncv). */
template <typename T, int MC, int RPW, int LPK>
__global__ void __launch_bounds__(DEC_WARPS * 32, 1) attn_decode_kernel(pcu_attn a, attn_grid g) {
    constexpr int V = 16 / sizeof(T);
    constexpr unsigned FULL = 0xffffffffu;
    constexpr int KPC = 32 / LPK; /* keys per chunk: lanes l and l + KPC share key l % KPC (LPK 2) */
    extern __shared__ float sm[];
    TR(0);
    TR(1);
    ST_START();
    cg::cluster_group cluster = cg::this_cluster();
    const int E = (int)a.E, Ev = (int)a.Ev, qb = g.qb, nw = blockDim.x >> 5, pitch = Ev + 2;
    const int nck = E / V, ncv = Ev / V, kpl = 32 / ncv;
    /* LPK 2: a lane holds half of its key's K row (chunks kc0 ..) and a
     * warp's V loads cover KPC keys (ncv / LPK loads) */
    const int nkl = nck / LPK, kc0 = LPK == 1 ? 0 : (int)(threadIdx.x & 31) / KPC * nkl, nvl = ncv / LPK;
    float *qs = sm;                    /* (ATTN_ROWS, E): the rows' queries */
    float *wp = qs + ATTN_ROWS * E;    /* (nw, qb, Ev + 2): each warp's m, l, acc per row */
    float *cz = wp + nw * qb * pitch;  /* (ncl, qb, Ev + 2): the blocks' (block 0's inbox) */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int crank = (int)cluster.block_rank(), ncl = (int)cluster.num_blocks();
    const size_t mboff = (sizeof(float) * (size_t)(ATTN_ROWS * E + (nw + ncl) * qb * pitch) + 7) / 8 * 8;
    const unsigned mb = dn_saddr((char *)sm + mboff); /* block 0's inbox mbarrier */
    const int64_t kvb = blockIdx.x / (unsigned)g.nrowblk, rb = blockIdx.x % (unsigned)g.nrowblk, r0 = rb * qb;
    const int nr = (int)min((int64_t)qb, g.R - r0); /* rows of this block */
    /* Block 0's inbox: every block sends it its partials with st.async,
     * counted in bytes by an mbarrier (one arrival: block 0's thread 0).
     * The barrier is set up here and the cluster barrier that publishes
     * it is waited for only before the sends, after the loop. */
    if (crank == 0 && threadIdx.x == 0) dec_mbar_init(mb, (unsigned)(ncl * nr * pitch * sizeof(float)));
    dec_cluster_arrive_relaxed();
    const attn_offs o = attn_offsets(a, kvb);
    const T *kc = (const T *)a.k + o.k, *vc = (const T *)a.v + o.v;

    /* row r is query head gq = (r0 + r) / L of the group, position i;
     * rows past nr repeat the last one, so that loads need no branch
     * (they see no key: dec_mask) */
    const int64_t hq = a.nb > 0 ? a.qb[a.nb - 1] : 0, hm = a.nb > 0 ? a.mb[a.nb - 1] : 0;
    int64_t qrow[ATTN_ROWS];
#pragma unroll
    for (int r = 0; r < ATTN_ROWS; r++) {
        unsigned rr = (unsigned)(r0 + min(r, nr - 1)), gq = rr / (unsigned)a.L, i = rr % (unsigned)a.L;
        qrow[r] = o.q + gq * hq + i * a.q_sl;
    }
    /* this warp's rows: rows rg * RPW + r, r < RPW, of the block */
    const int ngr = RPW == 1 ? qb : 1, rg = warp % ngr, nslot = nw / ngr, slot = warp / ngr;
    const int nmine = slot < nslot ? max(0, min(RPW, nr - rg * RPW)) : 0; /* rows it owns (0: idle) */
    int64_t mrow[RPW], irow[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        unsigned rr = (unsigned)(r0 + min(rg * RPW + r, nr - 1)), gq = rr / (unsigned)a.L, i = rr % (unsigned)a.L;
        mrow[r] = o.m + gq * hm + i * a.m_sl, irow[r] = i;
    }
    const int64_t nch = (a.S + KPC - 1) / KPC, cstep = (int64_t)nslot * ncl;
    int64_t ch = nmine ? (int64_t)slot * ncl + crank : nch;
    dn_pdl_wait(); /* launched early (attn_dec_go): q and the caches come from the kernels before */
    ST_WAITED();
    TR(2);
    float mv[RPW]; /* the first chunk's mask, loaded with the prologue's loads */
    dec_mask<RPW>(a, mrow, irow, nmine, ch * KPC + lane % KPC, mv);

    /* The prologue's loads in one batch: the cache write's position (it
     * is checked only after the barrier), the queries (typed, unrolled:
     * in flight together), then the first chunk's mask, whose conversion
     * waits while the others are still coming. */
    int64_t p = -1; /* key p's K and V rows come from kn / vn; -1: none */
    if (a.pos) p = *(const int64_t *)a.pos;
    const T *kn = a.pos ? (const T *)a.kn + o.kn : NULL, *vn = a.pos ? (const T *)a.vn + o.vn : NULL;
    const T *rc = (const T *)a.rcos + o.rc, *rs = (const T *)a.rsin + o.rc; /* the rope's row (a.rcos) */
    /* query elements per row and thread (E <= MC * V * LPK; the block has
     * DEC_WARPS warps: attn_dec_geom).  One for every instance: the
     * prologue's loads and arithmetic are unrolled over QPT, and sized for
     * a block of one warp they were 8 times the code that runs (head dim
     * 256), fetched anew at every launch of the step (H100, bench_kernels,
     * Gemma-3-1B's shape at 128 positions: prologue 11,900 -> 3,900
     * cycles, 20.8 -> 15.8 us a launch) */
    constexpr int QPT = (MC * V * LPK + DEC_WARPS * 32 - 1) / (DEC_WARPS * 32);
    float qv[ATTN_ROWS][QPT];
    /* the new key rotated (and normalized) into shared memory: the row read
     * and written below */
    T *knr = (T *)((char *)sm + (mboff + 8 + 15) / 16 * 16);
    if (a.qnw) { /* with the rope and the cache write (pcu_attn_norm_ok) */
        dec_norm_rope<T, QPT>(a, (const T *)a.q, qrow, kn, knr, rc, rs, wp, qv);
        kn = knr;
    } else { /* every load first (q's rows, the new key, the rope's row), then the arithmetic */
        const int R = (int)a.R;
        const bool rope = a.rcos, krot = rope && kn;
        const T *q = (const T *)a.q;
        float xq[ATTN_ROWS][QPT], pq[ATTN_ROWS][QPT], xk[QPT], pk[QPT], cr[QPT], sr[QPT];
#pragma unroll
        for (int u = 0; u < QPT; u++) {
            int e = threadIdx.x + u * blockDim.x, pe = dec_partner(e, R);
            bool in = e < E, rot = rope && e < R;
#pragma unroll
            for (int r = 0; r < ATTN_ROWS; r++) {
                xq[r][u] = in ? dn_f32(q[qrow[r] + e * a.q_se]) : 0.0f;
                pq[r][u] = rot ? dn_f32(q[qrow[r] + pe * a.q_se]) : 0.0f;
            }
            xk[u] = krot && in ? dn_f32(kn[e]) : 0.0f, pk[u] = krot && rot ? dn_f32(kn[pe]) : 0.0f;
            cr[u] = rot ? dn_f32(rc[e]) : 0.0f, sr[u] = rot ? dn_f32(rs[e]) : 0.0f;
        }
        TRV(13, __float_as_uint(xq[0][0]) ^ __float_as_uint(cr[0]), true);
#pragma unroll
        for (int u = 0; u < QPT; u++) {
            int e = threadIdx.x + u * blockDim.x;
#pragma unroll
            for (int r = 0; r < ATTN_ROWS; r++)
                qv[r][u] = e >= E ? 0.0f : rope ? dec_rot<T>(xq[r][u], pq[r][u], e, R, cr[u], sr[u]) : xq[r][u];
            if (krot && e < E) knr[e] = dn_from<T>(dec_rot<T>(xk[u], pk[u], e, R, cr[u], sr[u]));
        }
        if (krot) kn = knr;
    }
#pragma unroll
    for (int r = 0; r < ATTN_ROWS; r++)
#pragma unroll
        for (int u = 0; u < QPT; u++) {
            int e = threadIdx.x + u * blockDim.x;
            if (e < E) qs[r * E + e] = qv[r][u];
        }
    __syncthreads();
    TR(3);
    ST_MARK(3); /* prologue done */
    /* Now the next kernel may launch: it streams its weights during the
     * key loop and the merges.  Measured on an H200 (Llama-3.2-1B, same
     * runs): here, int4 with the quantized embedding 1,787 tok/s, int8
     * 1,404, bf16 1,253; after the key loop 1,773, 1,400 and 1,234; at
     * the start 1,776, 1,391 and 1,237; from a 1,536-token prompt (int4e)
     * 1,643, 1,643 and 1,633.  Earlier (four rows per warp at every
     * length), after the sends or at the exit: 2-3 % slower than after
     * the loop. */
    dn_pdl_release();
    if (p < 0 || p >= a.S) p = -1; /* outside the cache: nothing written */

    const bool writer = rb == 0 && rg == 0; /* the warps that write the new rows into the caches */
    float m[RPW], l[RPW], acc[RPW][V]; /* acc: columns (lane % ncv) * V + e */
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int e = 0; e < V; e++) acc[r][e] = 0.0f;
    }
    const float *qg = qs + rg * RPW * E; /* this warp's rows' queries; E is a multiple of V >= 4 */
    const int vkey = lane / ncv, vcol = (lane - vkey * ncv) * V; /* this lane's V chunk of a load */
#ifdef PCU_ATTN_TRACE
    bool trfirst = true;
#endif
    for (; ch < nch; ch += cstep) {
        const int64_t j0 = ch * KPC, j = j0 + lane % KPC;
        bool vis = false;
#pragma unroll
        for (int r = 0; r < RPW; r++) vis |= mv[r] != -INFINITY;
        const bool kneed = vis || (writer && j == p);
        const unsigned need = __ballot_sync(FULL, kneed); /* keys whose K and V are read */
        uint4 kr[MC], vr[MC];
        if (need) {
            const T *krow = j == p ? kn : kc + j * a.k_ss;
#pragma unroll
            for (int c = 0; c < MC; c++)
                kr[c] = c < nkl && kneed ? *(const uint4 *)(krow + (kc0 + c) * V) : make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int t = 0; t < MC; t++) {
                int jj = t * kpl + vkey;
                const T *vrow = j0 + jj == p ? vn : vc + (j0 + jj) * a.v_ss;
                vr[t] = t < nvl && (need >> jj & 1u) ? *(const uint4 *)(vrow + vcol) : make_uint4(0, 0, 0, 0);
            }
        }
        float mvn[RPW]; /* the next chunk's mask, in flight meanwhile */
        dec_mask<RPW>(a, mrow, irow, nmine, (ch + cstep) * KPC + lane % KPC, mvn);
        if (need) {
            TRV(9, kr[0].x ^ vr[0].x, trfirst);
            float s[RPW];
#pragma unroll
            for (int r = 0; r < RPW; r++) s[r] = 0.0f;
#pragma unroll
            for (int c = 0; c < MC; c++) {
                if (c >= nkl) break;
                float f[V];
                dn_unpack(kr[c], f, T());
#pragma unroll
                for (int r = 0; r < RPW; r++) {
                    const float4 *q4 = (const float4 *)(qg + r * E + (kc0 + c) * V); /* 16-byte shared loads */
#pragma unroll
                    for (int h = 0; h < V / 4; h++) {
                        float4 qq = q4[h];
                        s[r] = fmaf(qq.x, f[4 * h], s[r]), s[r] = fmaf(qq.y, f[4 * h + 1], s[r]);
                        s[r] = fmaf(qq.z, f[4 * h + 2], s[r]), s[r] = fmaf(qq.w, f[4 * h + 3], s[r]);
                    }
                }
            }
            if (LPK == 2)
#pragma unroll
                for (int r = 0; r < RPW; r++) s[r] += __shfl_xor_sync(FULL, s[r], KPC); /* the row's two halves */
            TRV(10, __float_as_uint(s[0]), trfirst);
            /* the rows' softmax steps side by side (no branch between
             * rows, so their warp reductions overlap): a row that has
             * seen nothing yet (mn = -inf, uniform in the warp) keeps
             * l, acc and m as they are (corr 1, weights 0) */
            float pr[RPW], mn[RPW], corr[RPW], sum[RPW]; /* pr: this lane's key's weight per row */
#pragma unroll
            for (int r = 0; r < RPW; r++) mn[r] = s[r] = mv[r] == -INFINITY ? -INFINITY : s[r] * a.scale + mv[r];
#pragma unroll
            for (int sh = KPC / 2; sh > 0; sh >>= 1)
#pragma unroll
                for (int r = 0; r < RPW; r++) mn[r] = dn_nanmax(mn[r], __shfl_xor_sync(FULL, mn[r], sh));
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                mn[r] = dn_nanmax(m[r], mn[r]);
                const bool none = mn[r] == -INFINITY;
                corr[r] = none ? 1.0f : expf(m[r] - mn[r]); /* m = -inf gives 0; NaN sticks */
                sum[r] = pr[r] = none ? 0.0f : expf(s[r] - mn[r]);
            }
#pragma unroll
            for (int sh = KPC / 2; sh > 0; sh >>= 1) /* over one copy of the chunk's keys */
#pragma unroll
                for (int r = 0; r < RPW; r++) sum[r] += __shfl_xor_sync(FULL, sum[r], sh);
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                l[r] = l[r] * corr[r] + sum[r];
#pragma unroll
                for (int e = 0; e < V; e++) acc[r][e] *= corr[r];
                m[r] = mn[r];
            }
            TRV(11, __float_as_uint(pr[0]) ^ __float_as_uint(l[0]), trfirst);
#pragma unroll
            for (int t = 0; t < MC; t++) {
                if (t >= nvl) break;
                float f[V];
                dn_unpack(vr[t], f, T());
#pragma unroll
                for (int r = 0; r < RPW; r++) {
                    float pj = __shfl_sync(FULL, pr[r], t * kpl + vkey);
#pragma unroll
                    for (int e = 0; e < V; e++) acc[r][e] = fmaf(pj, f[e], acc[r][e]);
                }
            }
            if (writer && p >= j0 && p < j0 + KPC) { /* the cache write (once per k/v matrix) */
                T *kw = (T *)a.k + o.k + p * a.k_ss, *vw = (T *)a.v + o.v + p * a.v_ss;
                if (j == p)
#pragma unroll
                    for (int c = 0; c < MC; c++)
                        if (c < nkl) *(uint4 *)(kw + (kc0 + c) * V) = kr[c];
#pragma unroll
                for (int t = 0; t < MC; t++)
                    if (t < nvl && j0 + t * kpl + vkey == p) *(uint4 *)(vw + vcol) = vr[t];
            }
            TRV(12, __float_as_uint(acc[0][0]), trfirst);
#ifdef PCU_ATTN_TRACE
            trfirst = false;
#endif
        }
#pragma unroll
        for (int r = 0; r < RPW; r++) mv[r] = mvn[r];
    }

    TR(4);
    ST_MARK(4); /* key loop done */
    /* the warp's partials: sum acc over the lanes holding the same columns;
     * the block's rows it does not own are empty in its slot (m = -inf) */
    for (int off = ncv; off < 32; off <<= 1)
#pragma unroll
        for (int r = 0; r < RPW; r++)
#pragma unroll
            for (int e = 0; e < V; e++) acc[r][e] += __shfl_xor_sync(FULL, acc[r][e], off);
    float *ww = wp + warp * qb * pitch;
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        if (r >= nmine) break;
        const int row = rg * RPW + r;
        if (lane < ncv)
#pragma unroll
            for (int e = 0; e < V; e++) ww[row * pitch + 2 + lane * V + e] = acc[r][e];
        if (lane == 0) ww[row * pitch] = m[r], ww[row * pitch + 1] = l[r];
    }
    if (lane < nr && (lane < rg * RPW || lane >= rg * RPW + nmine)) ww[lane * pitch] = -INFINITY;
    __syncthreads();
    TR(5);

    /* the block's partials: merge the warps' (relative to their max M) and
     * send them to block 0's inbox, slot crank */
    dec_cluster_wait(); /* block 0's mbarrier is set up */
    const unsigned slot0 = dn_mapa(dn_saddr(cz + crank * qb * pitch), 0), mb0 = dn_mapa(mb, 0);
    for (int x = threadIdx.x; x < nr * Ev; x += blockDim.x) {
        int r = x / Ev, e = x - r * Ev;
        float M = -INFINITY, num = 0.0f, den = 0.0f;
        for (int w = 0; w < nw; w++) M = dn_nanmax(M, wp[(w * qb + r) * pitch]);
        for (int w = 0; w < nw; w++) {
            const float *pw = wp + (w * qb + r) * pitch;
            if (pw[0] == -INFINITY) continue; /* an empty warp, or not its row: l and acc unwritten */
            float wt = expf(pw[0] - M);
            num = fmaf(wt, pw[2 + e], num), den = fmaf(wt, pw[1], den);
        }
        const unsigned d = slot0 + (unsigned)(r * pitch) * 4u;
        dec_send(d + (unsigned)(2 + e) * 4u, num, mb0);
        if (e == 0) dec_send(d, M, mb0), dec_send(d + 4u, den, mb0);
    }
    TR(6);
    ST_MARK(5); /* partials sent to block 0 */

    /* block 0 merges the cluster's blocks once all their bytes are in */
    if (crank == 0) {
        if (threadIdx.x == 0) dec_mbar_arrive(mb);
        dec_mbar_wait(mb);
        for (int x = threadIdx.x; x < nr * Ev; x += blockDim.x) {
            int r = x / Ev, e = x - r * Ev;
            float M = -INFINITY, num = 0.0f, den = 0.0f;
            for (int c = 0; c < ncl; c++) M = dn_nanmax(M, cz[(c * qb + r) * pitch]);
            for (int c = 0; c < ncl; c++) {
                const float *pc = cz + (c * qb + r) * pitch;
                float wt = (M == -INFINITY || pc[0] == -INFINITY) ? 0.0f : expf(pc[0] - M);
                num = fmaf(wt, pc[2 + e], num), den = fmaf(wt, pc[1], den);
            }
            unsigned rr = (unsigned)(r0 + r), gq = rr / (unsigned)a.L, i = rr % (unsigned)a.L;
            ((T *)a.out)[((o.o + gq) * a.L + i) * Ev + e] = dn_from<T>(M == -INFINITY ? 0.0f : num / den);
        }
    }
    TR(7);
    TR(8);
    ST_END(2);
}

PCU_ST_EXPORT(pcu_st_take_attn)

#ifdef PCU_ATTN_TRACE
/* Print the last decode launch's phases: cycles of block 0 and the mean
 * over blocks; the span from the first block's start to the last block's
 * end (ns).  The library never prints: this exists in the trace build of
 * tests/gpu/bench_kernels.cu only. */
extern "C" void pcu_attn_trace_dump(int nblocks) {
    static long long h[1024][TR_N];
    if (cudaDeviceSynchronize() != cudaSuccess || cudaMemcpyFromSymbol(h, tr_buf, sizeof h) != cudaSuccess) return;
    static const char *nm[] = {"", "", "wait", "prologue", "loop", "warp partials", "block merge + send",
                               "block 0: inbox wait + merge", ""};
    long long t0 = h[0][0], t1 = h[0][TR_END];
    for (int b = 0; b < nblocks; b++) t0 = h[b][0] < t0 ? h[b][0] : t0, t1 = h[b][TR_END] > t1 ? h[b][TR_END] : t1;
    double s0 = 0, life = 0;
    for (int b = 0; b < nblocks; b++) s0 += (double)(h[b][0] - t0), life += (double)(h[b][TR_END] - h[b][0]);
    printf("  trace: span %lld ns, block starts after the first by %.0f ns on average, blocks live %.0f ns\n", t1 - t0,
           s0 / nblocks, life / nblocks);
    for (int i = 2; i < TR_END; i++) {
        double m = 0;
        for (int b = 0; b < nblocks; b++) m += (double)(h[b][i] - h[b][i - 1]);
        printf("  trace: %-28s block 0 %6lld cycles, mean %8.0f\n", nm[i], h[0][i] - h[0][i - 1], m / nblocks);
    }
    /* the prologue: its loads (from the wait), the q/k norm's block barrier */
    if (h[0][13] > h[0][2] && h[0][13] < h[0][3]) {
        bool nb = h[0][14] > h[0][13] && h[0][14] < h[0][3];
        printf("  trace: block 0 prologue: loads %lld, norm sums + barrier %lld, rest %lld cycles\n", h[0][13] - h[0][2],
               nb ? h[0][14] - h[0][13] : 0LL, h[0][3] - (nb ? h[0][14] : h[0][13]));
    }
    /* block 0's warp 0, first chunk: K/V loads (from the prologue's end),
     * scores, softmax, values, the rest of the loop */
    if (h[0][9] > h[0][3] && h[0][12] > h[0][11])
        printf("  trace: block 0 warp 0 chunk: K/V loads %lld, scores %lld, softmax %lld, values %lld, rest %lld cycles\n",
               h[0][9] - h[0][3], h[0][10] - h[0][9], h[0][11] - h[0][10], h[0][12] - h[0][11], h[0][4] - h[0][12]);
}
#endif

template <typename T, int MC, int RPW, int LPK = 1>
static cudaError_t attn_dec_go(cudaStream_t s, const pcu_attn *a, const attn_grid *g) {
    if (g->smem > ATTN_SMEM_MAX) { /* head dim 256: more than the default */
        cudaError_t e = cudaFuncSetAttribute(attn_decode_kernel<T, MC, RPW, LPK>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g->smem);
        if (e != cudaSuccess) return e;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(g->nrowblk * g->nkv), (unsigned)g->dcl, 1);
    cfg.blockDim = dim3(32 * (unsigned)g->dw, 1, 1);
    cfg.dynamicSmemBytes = g->smem;
    cfg.stream = s;
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = 1, at[0].val.clusterDim.y = (unsigned)g->dcl, at[0].val.clusterDim.z = 1;
    at[1].id = cudaLaunchAttributeProgrammaticStreamSerialization; /* see dn_launch_pdl */
    at[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = 2;
    cudaError_t e = cudaLaunchKernelEx(&cfg, attn_decode_kernel<T, MC, RPW, LPK>, *a, *g);
    cudaError_t last = cudaGetLastError(); /* clear it either way */
    return e != cudaSuccess ? e : last;
}

template <typename T> static cudaError_t attn_dec(cudaStream_t s, const pcu_attn *a, const attn_grid *g) {
    if (g->dlpk == 2)
        return g->drpw == 1 ? attn_dec_go<T, 16, 1, 2>(s, a, g) : attn_dec_go<T, 16, ATTN_ROWS, 2>(s, a, g);
    if (g->drpw == 1) {
        if (g->dmc <= 4) return attn_dec_go<T, 4, 1>(s, a, g);
        if (g->dmc <= 8) return attn_dec_go<T, 8, 1>(s, a, g);
        return attn_dec_go<T, 16, 1>(s, a, g);
    }
    if (g->dmc <= 4) return attn_dec_go<T, 4, ATTN_ROWS>(s, a, g);
    if (g->dmc <= 8) return attn_dec_go<T, 8, ATTN_ROWS>(s, a, g);
    return attn_dec_go<T, 16, ATTN_ROWS>(s, a, g);
}

/* ---- prefill on tensor cores -------------------------------------------------- */

/* f16 / bf16 prefill (L >= 16 query rows, head dims E = Ev of 64, 128 or
 * 256, rows contiguous): a block of 4 warps takes 64 query rows of one output
 * batch index (16 per warp) and walks the keys in tiles of 64, flash
 * attention style.  K and V tiles are copied into shared memory with
 * cp.async, the next tile's copies in flight while the current one is
 * computed; S = q k^T on tensor cores (mma.m16n8k16, fp32 sums; B
 * fragments by ldmatrix), scaled and masked in fp32, the online softmax
 * in fp32 (exp2 of log2-scaled scores; 4 lanes share a row), then P,
 * rounded to the dtype, times V (ldmatrix.trans) into fp32 O.  Row sums
 * add the rounded P, so O / l weighs each key as the product did.
 *
 * Masks.  A tile no row of the block sees (every term a false bool or
 * -inf) is skipped without a copy; in a tile some row sees, the keys no
 * row sees are copied as zeros (so garbage past a static cache's position
 * never meets the product; a finite term, however low, counts as seen, as
 * in the CPU's softmax); a tile that
 * every row < L sees with a zero term (a true bool, a 0.0 float, causal
 * allowing) skips the per-element mask.  With a mask tensor, a first
 * kernel (attn_mma_map) derives that per (mask batch, row block, tile)
 * into the scratch, reading the mask once rather than once per head;
 * without one it follows from the shapes. */
#define MMA_ROWS 64
#define MMA_KEYS 64
#define MMA_MAX_TILES 1024 /* key tiles of a row: S up to 65,536 */

typedef struct mma_tile {
    unsigned long long keys; /* bit k: some row of the block sees key j0 + k */
    unsigned full;           /* every row < L sees every key with a zero term */
    unsigned pad;
} mma_tile;

template <typename T> struct mma_t;
template <> struct mma_t<__half> {
    static __device__ __forceinline__ void run(float *c, const uint32_t *a, const uint32_t *b) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};
template <> struct mma_t<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float *c, const uint32_t *a, const uint32_t *b) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};

/* Two T values in one register (lo in the low half). */
template <typename T> __device__ __forceinline__ uint32_t mma_pack2(T lo, T hi) {
    uint16_t a, b;
    memcpy(&a, &lo, 2), memcpy(&b, &hi, 2);
    return (uint32_t)a | (uint32_t)b << 16;
}

/* Four 8x8 matrices of 16-bit elements from shared memory (lane l gives
 * row l % 8 of matrix l / 8); .trans hands out columns instead of rows. */
__device__ __forceinline__ void mma_ldm4(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((unsigned)__cvta_generic_to_shared(p))
                 : "memory");
}
__device__ __forceinline__ void mma_ldm4t(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((unsigned)__cvta_generic_to_shared(p))
                 : "memory");
}

/* The mask term of (row i, key j): 0, a float to add, or -inf. */
__device__ __forceinline__ float mma_mask(const pcu_attn &a, int64_t mo, int64_t i, int64_t j) {
    if (j >= a.S || (a.causal && j > i)) return -INFINITY;
    if (!a.mask) return 0.0f;
    const float v = dn_load(a.mask, a.mask_dtype, mo + i * a.m_sl + j * a.m_ss);
    return a.mask_dtype != PETREL_DTYPE_BOOL ? v : v != 0.0f ? 0.0f : -INFINITY;
}

/* One tile map entry per block: grid (tiles, row blocks, mask batches),
 * 256 threads; thread x takes key x % 64 for rows x / 64 + 4u. */
__global__ void __launch_bounds__(256) attn_mma_map(pcu_attn a, mma_tile *map) {
    __shared__ int seen[MMA_KEYS];
    __shared__ unsigned half[2];
    const int64_t tile = blockIdx.x, rb = blockIdx.y, nrb = gridDim.y, ntl = gridDim.x;
    int64_t mo = 0, mi = 0, rem = blockIdx.z, mul = 1;
    for (int d = a.nb - 1; d >= 0; d--) /* blockIdx.z counts the mask's own batch dims only */
        if (a.mb[d]) {
            const int64_t x = rem % a.bshape[d];
            rem /= a.bshape[d];
            mo += x * a.mb[d], mi += x * mul, mul *= a.bshape[d];
        }
    const int kk = threadIdx.x & (MMA_KEYS - 1), rq = threadIdx.x / MMA_KEYS;
    const int64_t j = tile * MMA_KEYS + kk;
    if (threadIdx.x < MMA_KEYS) seen[threadIdx.x] = 0;
    float t[MMA_ROWS / 4];
#pragma unroll
    for (int u = 0; u < MMA_ROWS / 4; u++) { /* every load in flight together */
        const int64_t i = rb * MMA_ROWS + rq + 4 * u;
        t[u] = i < a.L ? mma_mask(a, mo, i, j) : 0.0f;
    }
    bool any = false, all = true;
#pragma unroll
    for (int u = 0; u < MMA_ROWS / 4; u++) {
        if (rb * MMA_ROWS + rq + 4 * u >= a.L) continue; /* rows past L: never stored */
        any |= t[u] != -INFINITY;
        all &= t[u] == 0.0f; /* NaN: not all */
    }
    __syncthreads();
    if (any) seen[kk] = 1; /* every writer stores 1 */
    const bool full = __syncthreads_and(all);
    if (threadIdx.x < MMA_KEYS) {
        const unsigned b = __ballot_sync(0xffffffffu, seen[threadIdx.x] != 0);
        if ((threadIdx.x & 31) == 0) half[threadIdx.x >> 5] = b;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        mma_tile e = {(unsigned long long)half[1] << 32 | half[0], full ? 1u : 0u, 0u};
        map[(mi * nrb + rb) * ntl + tile] = e;
    }
}

template <typename T, int E>
__global__ void __launch_bounds__(128) attn_mma_kernel(pcu_attn a, const mma_tile *map, int ntiles) {
    constexpr int P = E + 8;                             /* shared row pitch: ldmatrix rows in other banks */
    constexpr int KS = E / 16, NT = E / 8, NK = MMA_KEYS / 8, TILE = MMA_KEYS * P;
    constexpr bool QS = E > 128; /* q's fragments from shared memory, not registers (E 256: O takes 128) */
    constexpr float LOG2E = 1.4426950408889634f;
    extern __shared__ __align__(16) unsigned char mma_sm[];
    T *kt = (T *)mma_sm, *vt = kt + 2 * TILE;            /* two stages of K and V tiles */
    T *qt = vt + 2 * TILE;                               /* QS: the block's q rows (MMA_ROWS, P) */
    unsigned long long *tkeys = (unsigned long long *)(qt + (QS ? MMA_ROWS * P : 0)); /* (ntiles) */
    unsigned char *tfull = (unsigned char *)(tkeys + ntiles);         /* (ntiles) */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t nrb = gridDim.x, rbk = nrb - 1 - blockIdx.x; /* late rows (most keys when causal) first */
    const int64_t ob = blockIdx.y;
    /* the operands' offsets at ob; mi: the tile map's batch index (the dims
     * the mask broadcasts over, mb 0, do not count) */
    int64_t qo = 0, ko = 0, vo = 0, mo = 0, mi = 0, mul = 1, rem = ob;
    for (int d = a.nb - 1; d >= 0; d--) {
        const int64_t x = rem % a.bshape[d];
        rem /= a.bshape[d];
        const bool head = d == a.nb - 1;
        qo += x * a.qb[d];
        ko += (head ? x / a.kdiv : x) * a.kb[d], vo += (head ? x / a.vdiv : x) * a.vb[d];
        if (a.mb[d]) mo += x * a.mb[d], mi += x * mul, mul *= a.bshape[d];
    }
    const T *q = (const T *)a.q + qo, *kg = (const T *)a.k + ko, *vg = (const T *)a.v + vo;
    const int64_t rfirst = rbk * MMA_ROWS, rlast = min(rfirst + MMA_ROWS, a.L) - 1;
    /* the tiles this block sees */
    for (int x = threadIdx.x; x < ntiles; x += blockDim.x) {
        if (map) {
            const mma_tile e = map[(mi * nrb + rbk) * ntiles + x];
            tkeys[x] = e.keys, tfull[x] = (unsigned char)e.full;
        } else {
            const int64_t j0 = (int64_t)x * MMA_KEYS, end = a.causal ? min(a.S, rlast + 1) : a.S;
            const int64_t nv = min((int64_t)MMA_KEYS, max((int64_t)0, end - j0));
            tkeys[x] = nv == MMA_KEYS ? ~0ull : (1ull << nv) - 1;
            tfull[x] = j0 + MMA_KEYS <= a.S && (!a.causal || j0 + MMA_KEYS - 1 <= rfirst);
        }
    }
    const int64_t r0 = rfirst + warp * 16, ra = r0 + g, rb = r0 + g + 8; /* this lane's two rows */
    /* q's A fragments (rows past L repeat row L - 1: computed, never stored) */
    uint32_t qa[QS ? 1 : KS][4];
    if constexpr (QS) { /* 16-byte rows (attn_mma_ok) */
        for (int x = threadIdx.x; x < MMA_ROWS * (E / 8); x += blockDim.x) {
            const int r = x / (E / 8), col = (x - r * (E / 8)) * 8;
            *(uint4 *)(qt + r * P + col) = *(const uint4 *)(q + min(rfirst + r, a.L - 1) * a.q_sl + col);
        }
    } else {
        const T *pa = q + min(ra, a.L - 1) * a.q_sl, *pb = q + min(rb, a.L - 1) * a.q_sl;
#pragma unroll
        for (int s = 0; s < KS; s++) {
            const int c = s * 16 + 2 * t;
            qa[s][0] = mma_pack2<T>(pa[c], pa[c + 1]), qa[s][1] = mma_pack2<T>(pb[c], pb[c + 1]);
            qa[s][2] = mma_pack2<T>(pa[c + 8], pa[c + 9]), qa[s][3] = mma_pack2<T>(pb[c + 8], pb[c + 9]);
        }
    }
    __syncthreads(); /* the tile lists */
    float o[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f; /* running max (log2 units), this lane's sums */
    const float sl2 = a.scale * LOG2E;

    /* the copies of tile c into stage st: rows no row sees as zeros */
    auto issue = [&](int c, int st) {
        const int64_t j0 = (int64_t)c * MMA_KEYS;
        const unsigned long long bits = tkeys[c];
        T *kd = kt + st * TILE, *vd = vt + st * TILE;
        for (int x = threadIdx.x; x < MMA_KEYS * (E / 8); x += blockDim.x) {
            const int r = x / (E / 8), col = (x - r * (E / 8)) * 8;
            const int64_t j = min(j0 + r, a.S - 1);
            const int n = (bits >> r & 1) ? 16 : 0;
            dn_cp16_fill(kd + r * P + col, kg + j * a.k_ss + col, n);
            dn_cp16_fill(vd + r * P + col, vg + j * a.v_ss + col, n);
        }
    };
    auto next = [&](int c) {
        for (c++; c < ntiles && !tkeys[c]; c++) {
        }
        return c;
    };
    int cur = next(-1), st = 0;
    if (cur < ntiles) issue(cur, 0);
    dn_cp_commit();
    while (cur < ntiles) {
        const int nxt = next(cur);
        if (nxt < ntiles) issue(nxt, st ^ 1);
        dn_cp_commit();
        const int64_t j0 = (int64_t)cur * MMA_KEYS;
        const bool full = tfull[cur];
        float mt[NK][4]; /* a mixed tile's mask terms, loaded while the copies land */
        if (!full)
#pragma unroll
            for (int n = 0; n < NK; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int64_t i = e < 2 ? ra : rb, j = j0 + n * 8 + 2 * t + (e & 1);
                    mt[n][e] = i < a.L ? mma_mask(a, mo, i, j) : -INFINITY;
                }
        dn_cp_wait<1>();
        __syncthreads();
        const T *ks = kt + st * TILE, *vs = vt + st * TILE;
        float sc[NK][4];
#pragma unroll
        for (int n = 0; n < NK; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
        if constexpr (QS) { /* a: rows r0 / +8, dims s*16 / +8 */
#pragma unroll
            for (int s = 0; s < KS; s++) {
                uint32_t qf[4];
                mma_ldm4(qf, qt + (warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * P + s * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int n = 0; n < NK; n += 2) {
                    uint32_t b[4];
                    mma_ldm4(b, ks + (n * 8 + (lane >> 4) * 8 + (lane & 7)) * P + s * 16 + ((lane >> 3) & 1) * 8);
                    mma_t<T>::run(sc[n], qf, b);
                    mma_t<T>::run(sc[n + 1], qf, b + 2);
                }
            }
        } else {
#pragma unroll
            for (int n = 0; n < NK; n += 2)
#pragma unroll
                for (int s = 0; s < KS; s++) { /* b: keys n*8.., dims s*16 / +8, then keys (n+1)*8.. */
                    uint32_t b[4];
                    mma_ldm4(b, ks + (n * 8 + (lane >> 4) * 8 + (lane & 7)) * P + s * 16 + ((lane >> 3) & 1) * 8);
                    mma_t<T>::run(sc[n], qa[s], b);
                    mma_t<T>::run(sc[n + 1], qa[s], b + 2);
                }
        }
        /* scale and mask in log2 units; the rows' new max (4 lanes a row) */
        float na = ma, nb = mb;
#pragma unroll
        for (int n = 0; n < NK; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float v = sc[n][e] * sl2;
                /* a finite mask term stays finite in log2 units (HF's masks hold the dtype's lowest
                 * value: a row masked everywhere so weighs its keys alike, as the CPU's softmax does) */
                if (!full) {
                    const float m = mt[n][e]; /* finite: at least -FLT_MAX / 2; NaN stays */
                    v = m == -INFINITY ? -INFINITY : fmaf(m < -FLT_MAX / 2 ? -FLT_MAX / 2 : m, LOG2E, v);
                }
                sc[n][e] = v;
                if (e < 2) na = dn_nanmax(na, v);
                else nb = dn_nanmax(nb, v);
            }
#pragma unroll
        for (int sh = 1; sh < 4; sh <<= 1) {
            na = dn_nanmax(na, __shfl_xor_sync(0xffffffffu, na, sh));
            nb = dn_nanmax(nb, __shfl_xor_sync(0xffffffffu, nb, sh));
        }
        const float ca = na == -INFINITY ? 1.0f : exp2f(ma - na), cb = nb == -INFINITY ? 1.0f : exp2f(mb - nb);
        ma = na, mb = nb, la *= ca, lb *= cb;
#pragma unroll
        for (int n = 0; n < NT; n++) o[n][0] *= ca, o[n][1] *= ca, o[n][2] *= cb, o[n][3] *= cb;
        /* P rounded to T: A fragments of the keys' 16-wide k-steps */
        uint32_t pa[MMA_KEYS / 16][4];
#pragma unroll
        for (int n = 0; n < NK; n++) {
            T p[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float m = e < 2 ? na : nb;
                p[e] = dn_from<T>(m == -INFINITY ? 0.0f : exp2f(sc[n][e] - m));
            }
            la += dn_f32(p[0]) + dn_f32(p[1]), lb += dn_f32(p[2]) + dn_f32(p[3]);
            pa[n / 2][(n & 1) * 2 + 0] = mma_pack2<T>(p[0], p[1]);
            pa[n / 2][(n & 1) * 2 + 1] = mma_pack2<T>(p[2], p[3]);
        }
        /* O += P V: b of keys s*16 / +8, dims n*8, then dims (n+1)*8 */
#pragma unroll
        for (int s = 0; s < MMA_KEYS / 16; s++)
#pragma unroll
            for (int n = 0; n < NT; n += 2) {
                uint32_t b[4];
                mma_ldm4t(b, vs + (s * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * P + n * 8 + (lane >> 4) * 8);
                mma_t<T>::run(o[n], pa[s], b);
                mma_t<T>::run(o[n + 1], pa[s], b + 2);
            }
        __syncthreads(); /* stage st is copied into again two tiles on */
        cur = nxt, st ^= 1;
    }
    dn_cp_wait<0>();
#pragma unroll
    for (int sh = 1; sh < 4; sh <<= 1) {
        la += __shfl_xor_sync(0xffffffffu, la, sh);
        lb += __shfl_xor_sync(0xffffffffu, lb, sh);
    }
    T *out = (T *)a.out + ob * a.L * a.Ev;
#pragma unroll
    for (int n = 0; n < NT; n++) {
        const int c = n * 8 + 2 * t;
        if (ra < a.L) {
            out[ra * a.Ev + c] = dn_from<T>(ma == -INFINITY ? 0.0f : o[n][0] / la);
            out[ra * a.Ev + c + 1] = dn_from<T>(ma == -INFINITY ? 0.0f : o[n][1] / la);
        }
        if (rb < a.L) {
            out[rb * a.Ev + c] = dn_from<T>(mb == -INFINITY ? 0.0f : o[n][2] / lb);
            out[rb * a.Ev + c + 1] = dn_from<T>(mb == -INFINITY ? 0.0f : o[n][3] / lb);
        }
    }
}

/* The grid of the tensor-core prefill: row blocks, output batch count,
 * mask batches (the tile map's) and key tiles. */
typedef struct mma_plan {
    int64_t nrb, nbatch, nmb, ntiles;
} mma_plan;

static mma_plan attn_mma_plan(const pcu_attn *a) {
    mma_plan p = {(a->L + MMA_ROWS - 1) / MMA_ROWS, 1, 1, (a->S + MMA_KEYS - 1) / MMA_KEYS};
    for (int d = 0; d < a->nb; d++) {
        p.nbatch *= a->bshape[d];
        if (a->mb[d]) p.nmb *= a->bshape[d];
    }
    return p;
}

/* Can the tensor-core prefill take a?  f16 / bf16, E = Ev of 64, 128 or
 * 256, at least 16 query rows, k / v rows contiguous and 16-byte aligned
 * (q's too at 256), q's elements contiguous; no cache write, rope or norm
 * (decode only). */
static bool attn_mma_ok(const pcu_attn *a) {
    if ((a->dtype != PETREL_DTYPE_F16 && a->dtype != PETREL_DTYPE_BF16) || a->E != a->Ev ||
        (a->E != 64 && a->E != 128 && a->E != 256) || a->L < 16 || a->S < 1 || a->q_se != 1 || a->k_se != 1 ||
        a->v_se != 1 ||
        a->k_ss % 8 || a->v_ss % 8 || (uintptr_t)a->k % 16 || (uintptr_t)a->v % 16 || a->pos || a->rcos || a->qnw)
        return false;
    for (int d = 0; d < a->nb; d++)
        if (a->kb[d] % 8 || a->vb[d] % 8 || (a->E > 128 && a->qb[d] % 8)) return false;
    if (a->E > 128 && (a->q_sl % 8 || (uintptr_t)a->q % 16)) return false; /* q's rows staged as 16-byte vectors */
    const mma_plan p = attn_mma_plan(a);
    return p.ntiles <= MMA_MAX_TILES && p.nbatch <= 65535 && p.nrb <= 65535 && p.nmb <= 65535; /* grid limits */
}

/* Scratch of the tensor-core prefill: the tile map when there is a mask. */
static size_t attn_mma_scratch(const pcu_attn *a) {
    const mma_plan p = attn_mma_plan(a);
    return a->mask ? sizeof(mma_tile) * (size_t)(p.nmb * p.nrb * p.ntiles) : 0;
}

template <typename T, int E> static cudaError_t attn_mma_go(cudaStream_t s, const pcu_attn *a, const mma_tile *map) {
    const mma_plan p = attn_mma_plan(a);
    auto k = attn_mma_kernel<T, E>;
    const size_t smem = sizeof(T) * (4 * MMA_KEYS + (E > 128 ? MMA_ROWS : 0)) * (E + 8) + 9 * (size_t)p.ntiles;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    k<<<dim3((unsigned)p.nrb, (unsigned)p.nbatch), 128, smem, s>>>(*a, map, (int)p.ntiles);
    return cudaGetLastError();
}

template <typename T> static cudaError_t attn_mma(cudaStream_t s, const pcu_attn *a, void *scratch) {
    const mma_plan p = attn_mma_plan(a);
    mma_tile *map = NULL;
    if (a->mask) {
        map = (mma_tile *)scratch;
        attn_mma_map<<<dim3((unsigned)p.ntiles, (unsigned)p.nrb, (unsigned)p.nmb), 256, 0, s>>>(*a, map);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return a->E == 64 ? attn_mma_go<T, 64>(s, a, map) : a->E == 128 ? attn_mma_go<T, 128>(s, a, map)
                                                                    : attn_mma_go<T, 256>(s, a, map);
}

/* ---- launch --------------------------------------------------------------------- */

extern "C" size_t pcu_attn_scratch(const pcu_attn *a, int sm_count) {
    attn_grid g = attn_plan(a, sm_count);
    if (!g.dec && attn_mma_ok(a)) return attn_mma_scratch(a);
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
    return a->Ev <= PCU_ATTN_MAX_EV && g.smem <= (g.dec ? DEC_SMEM_MAX : ATTN_SMEM_MAX) && g.nrowblk * g.nkv <= 0x7fffffff &&
           g.nkv * g.R <= 0x7fffffff && g.nsplit <= 65535;
}

extern "C" bool pcu_attn_writes_cache(const pcu_attn *a, int sm_count) {
    if (!a->pos || a->L != 1 || a->pos_dt != PETREL_DTYPE_I64) return false;
    attn_grid g = attn_plan(a, sm_count);
    int64_t es = attn_elsize(a->dtype);
    bool ok = g.dec && a->kn_dt == a->dtype && a->vn_dt == a->dtype && a->kn_se == 1 && a->vn_se == 1 &&
              (uintptr_t)a->kn % 16 == 0 && (uintptr_t)a->vn % 16 == 0;
    for (int d = 0; d < a->nb; d++) ok = ok && (a->knb[d] * es) % 16 == 0 && (a->vnb[d] * es) % 16 == 0;
    return ok;
}

extern "C" bool pcu_attn_rope_ok(const pcu_attn *a, int sm_count) {
    return a->rcos && a->rsin && a->R > 0 && a->R % 2 == 0 && a->R <= a->E && a->nb > 0 &&
           a->rcb[a->nb - 1] == 0 && pcu_attn_writes_cache(a, sm_count) && pcu_attn_fits(a, sm_count);
}

extern "C" bool pcu_attn_norm_ok(const pcu_attn *a, int sm_count) {
    return a->qnw && a->knw && pcu_attn_rope_ok(a, sm_count);
}

extern "C" cudaError_t pcu_attn_launch(cudaStream_t s, const pcu_attn *a, int sm_count, void *scratch) {
    if (!pcu_attn_fits(a, sm_count)) return cudaErrorInvalidValue;
    if (a->qnw && !pcu_attn_norm_ok(a, sm_count)) return cudaErrorInvalidValue;
    if (a->pos && !pcu_attn_writes_cache(a, sm_count)) return cudaErrorInvalidValue;
    if (a->rcos && !pcu_attn_rope_ok(a, sm_count)) return cudaErrorInvalidValue;
    attn_grid g = attn_plan(a, sm_count);
    if (g.nrowblk * g.nkv == 0) return cudaSuccess;
    if (!g.dec && attn_mma_ok(a))
        return a->dtype == PETREL_DTYPE_F16 ? attn_mma<__half>(s, a, scratch) : attn_mma<__nv_bfloat16>(s, a, scratch);
    if (g.dec) {
        switch (a->dtype) {
        case PETREL_DTYPE_F32: return attn_dec<float>(s, a, &g);
        case PETREL_DTYPE_F16: return attn_dec<__half>(s, a, &g);
        case PETREL_DTYPE_BF16: return attn_dec<__nv_bfloat16>(s, a, &g);
        default: return cudaErrorInvalidValue;
        }
    }
    switch (a->dtype) {
    case PETREL_DTYPE_F32: return attn_nv<float>(s, a, &g, (float *)scratch);
    case PETREL_DTYPE_F16: return attn_nv<__half>(s, a, &g, (float *)scratch);
    case PETREL_DTYPE_BF16: return attn_nv<__nv_bfloat16>(s, a, &g, (float *)scratch);
    default: return cudaErrorInvalidValue;
    }
}
