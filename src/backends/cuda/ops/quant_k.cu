/*
** quant_k.cu -- device kernels of the "quant" family (quant.c): products
** and embeddings over quantized weights.  Formats, layout and meaning:
** ops.def ("Quantized weights"); the byte layout and the decoders shared
** with the CPU: core/quant_fmt.h.
**
** Decode GEMV (1..8 rows of x), laid out like matmul_k.cu's: a block owns
** RB consecutive weight rows (gated: the same rows of gate and up), its
** threads split a packed row into 16-byte chunks of 16 int8, 32 int4 or
** nvfp4, or 64 int2 codes (thread t takes chunks t, t + threads, ...).
** Each thread first issues the loads of CPT chunks of all its R rows (at
** decode, 8 independent 16-byte loads in flight for an LM head, one chunk
** of each of its rows for smaller weights: qgemv_rows) with the scale
** and zero point of each chunk's group (of each half's for int2 and
** nvfp4, whose groups may be half a chunk), all before waiting for the
** kernel before (programmatic dependent launch, dense_k.cuh: they are
** program constants); then it reads x with plain loads, dequantizes in
** registers and accumulates in fp32.  So every code is read once and the group
** parameters once per group.  The block reduces its partial sums and
** applies the fused linears' rounding points as the bf16 GEMV does.
**
** Each weight is the float ops.def defines, bit for bit the CPU's:
**  - integer formats: a code u at bit p of a 16-bit half word goes into a
**    float's mantissa with one LOP3, f = 2^23 + u 2^p, and one fma takes
**    f 2^-p - 2^(23-p) = u exactly; then w = (u - zp') * s with
**    zp' = zp - qmin.  With f16/bf16 scales that is fma(u, s, -zp' s),
**    one rounding of the exact value because zp' s (at most 8 + 11
**    significant bits) is exact; with f32 scales (u - zp') * s.
**  - nvfp4: the E2M1 magnitude bits go to a float's bits 22-24 (its
**    exponent field then holds E2M1's exponent, a denormal for e = 0) and
**    the sign to bit 31; * 2^126 rescales exactly (explicit PTX without
**    .ftz, so a flush-to-zero build cannot break it); w = (e2m1 * s) * t.
** That is 4 ALU instructions per weight and row (int formats, f16/bf16),
** 8 for nvfp4.  By that count int4 needs about 8 instructions per byte
** of codes, which an H100/H200 issues at about 80% of HBM bandwidth, so
** int4 is expected to be bound by instruction issue, int8 by memory.
** (Taking the scale out of the group's dot product would halve it, but
** then W is no longer rounded as ops.def defines it.)
**
** One row of x with int4 codes and K a multiple of 1024, or int8 codes,
** f16/bf16 x and K a multiple of 512, takes a kernel of its own
** (q4gemv_kernel, below): a grid that fits on the GPU at once, each warp
** streaming row sets through a ring of cp.async copies in shared memory,
** with the zero point taken out of each chunk's dot product; with
** f16/bf16 x it takes x as 16-bit integers and multiplies codes by them
** four at a time (dp4a: about 1 instruction per weight for int4, 1/2
** for int8).
**
** Prefill dequantizes weight panels that cuBLAS multiplies (quant.c):
** integer codes a 16-byte chunk per thread (qdequant_vec_kernel), nvfp4
** and odd layouts a value per thread (qdequant_kernel); the embedding
** gathers and dequantizes rows.  All compute each weight with
** quant_fmt.h's decoders exactly as the CPU's reference does.
*/
#include <type_traits>

#include "../../../core/quant_fmt.h"
#include "data_k.cuh"
#include "dense_k.cuh"
#include "quant_k.cuh"
#include "quant_k.h"

#define QK_MAX_THREADS 256

/* How the GEMV decodes a format: integer codes of 8, 4 or 2 bits, or E2M1. */
enum { QK_INT8, QK_INT4, QK_INT2, QK_FP4 };

template <int KIND> struct qk_kind {
    static constexpr int bits = KIND == QK_INT8 ? 8 : KIND == QK_INT2 ? 2 : 4;
    static constexpr int C = 128 / bits;  /* codes per 16-byte chunk */
    static constexpr int HW = C / 8;      /* codes per 16-bit half word */
    /* parameter sets per chunk: int2 and nvfp4 groups may be half a chunk */
    static constexpr int GPC = KIND == QK_INT2 || KIND == QK_FP4 ? 2 : 1;
};

static int qk_kind_of(int fmt) {
    switch (fmt) {
    case PT_QFMT_INT8:
    case PT_QFMT_INT8S: return QK_INT8;
    case PT_QFMT_INT4:
    case PT_QFMT_INT4S: return QK_INT4;
    case PT_QFMT_INT2:
    case PT_QFMT_INT2S: return QK_INT2;
    default: return QK_FP4;
    }
}

/* 2^p for -126 <= p <= 127, built from its bits (a constant when p is). */
__device__ __forceinline__ float qk_pow2(int p) { return __int_as_float((127 + p) << 23); }

/* ---- decoding in registers ------------------------------------------------------ */

/* Codes e = 0 .. 16 / BITS - 1 of the half word h (code e at bit e * BITS,
 * higher bits ignored) as the exact floats u. */
template <int BITS> __device__ __forceinline__ void qk_codes(uint32_t h, float *u) {
    constexpr uint32_t mask = (1u << BITS) - 1u;
#pragma unroll
    for (int e = 0; e < 16 / BITS; e++)
        u[e] = fmaf(__uint_as_float((h & (mask << (e * BITS))) | 0x4b000000u), qk_pow2(-e * BITS),
                    -qk_pow2(23 - e * BITS));
}

/* a * b rounded to nearest, denormal operands kept whatever -ftz says. */
__device__ __forceinline__ float qk_mul_keep_denormals(float a, float b) {
    float r;
    asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

/* The E2M1 code at bits P .. P + 3 of v as its value (pt_e2m1_to_float). */
template <int P> __device__ __forceinline__ float qk_e2m1(uint32_t v) {
    uint32_t mag;
    if constexpr (P <= 22) mag = (v << (22 - P)) & 0x01c00000u;
    else mag = (v >> (P - 22)) & 0x01c00000u;
    uint32_t sign = (v << (28 - P)) & 0x80000000u;
    return qk_mul_keep_denormals(__uint_as_float(mag | sign), qk_pow2(126));
}

/* A group's scale as float: the compute dtype's value, or E4M3 (nvfp4). */
__device__ __forceinline__ float qk_scale(float v) { return v; }
__device__ __forceinline__ float qk_scale(__half v) { return __half2float(v); }
__device__ __forceinline__ float qk_scale(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float qk_scale(uint8_t v) { return pt_e4m3_to_float(v); }

/* The norm prologue's x * w, or x * (1 + w) as fma(x, w, x), rounded once
 * to T (the float GEMV's gemv_norm_scale, in float). */
template <typename T> __device__ __forceinline__ float qk_norm_scale(float x, float w, bool add_one) {
    return dn_round<T>(add_one ? fmaf(x, w, x) : x * w);
}

/* N consecutive elements of x at p (aligned to their size, at least 4
 * bytes) as floats: plain loads (x comes from the kernel before). */
template <typename T, int N> __device__ __forceinline__ void qk_load_x(const T *p, float *f) {
    constexpr int B = N * (int)sizeof(T);
    if constexpr (B >= 16) {
#pragma unroll
        for (int i = 0; i < B / 16; i++) dn_unpack(((const uint4 *)p)[i], f + i * (16 / (int)sizeof(T)), T());
    } else if constexpr (B == 8) {
        uint2 u = *(const uint2 *)p;
        const T *t = (const T *)&u;
#pragma unroll
        for (int i = 0; i < N; i++) f[i] = dn_f32(t[i]);
    } else {
        static_assert(B == 4, "x pieces are 4, 8 or a multiple of 16 bytes");
        uint32_t u = *(const uint32_t *)p;
        const T *t = (const T *)&u;
#pragma unroll
        for (int i = 0; i < N; i++) f[i] = dn_f32(t[i]);
    }
}

/* 32-bit word i of a 16-byte chunk. */
__device__ __forceinline__ uint32_t qk_word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* ---- decode GEMV ------------------------------------------------------------------ */

/* Weight and local row of row n of the stacked weights (GATED: of w[k]). */
__device__ __forceinline__ int qk_seg(const pcu_qgemv &g, int64_t n) {
    int s = 0;
    while (s + 1 < g.nw && n >= g.seg_start[s + 1]) s++;
    return s;
}

/* Chunks of each row a thread loads per step: LOADS loads in all for one
 * row of x (decode; qgemv_rows picks LOADS); one for several (their x
 * values take the registers). */
__host__ __device__ constexpr int qk_cpt(int MR, int R, int LOADS) { return MR > 1 || R >= LOADS ? 1 : LOADS / R; }

/* NG = 2: gated, the block also streams the same rows of the up weight.
 * Decode (MR = 1) gets at most 128 registers: 16 warps of them keep 64 KB
 * of loads in flight per multiprocessor.  Eight rows of x need more. */
template <typename T, int KIND, int MR, int RB, int NG, bool NORM, int LOADS>
__global__ void __launch_bounds__(QK_MAX_THREADS, MR == 1 ? 2 : 1) qgemv_kernel(pcu_qgemv g) {
    using F = qk_kind<KIND>;
    /* NORM: x's sum of squares.  int8 (bound by memory) sums it from the
     * pieces of x the product loads, and each storing thread takes 1/rms
     * itself.  The other formats, whose loop is bound by instruction
     * issue, read x again after the loop and meet at a second barrier.
     * H200, Llama-3.2-1B: int8 959 -> 1,012 tok/s with the sums in the
     * loop (bench_quant q/k/v + norm 8.26 -> 6.92 us, gate/up 22.4 ->
     * 20.0), nvfp4 923 -> 912. */
    constexpr bool SSL = KIND == QK_INT8;
    using S = typename std::conditional<KIND == QK_FP4, uint8_t, T>::type; /* a scale as stored */
    constexpr int R = RB * NG, CPT = qk_cpt(MR, R, LOADS); /* rows per block, chunks per row and step */
    constexpr int WPG = 4 / F::GPC;                      /* words per parameter set */
    const T *x = (const T *)g.x;
    const int64_t nch = g.K / F::C, n0 = (int64_t)blockIdx.x * RB;
    const int nt = blockDim.x;
    const int qmin = pt_qfmt_qmin((pt_qfmt)g.fmt);
    const bool asym = pt_qfmt_asym((pt_qfmt)g.fmt);

    /* row r of the block: codes, scales and zero points (gated: then the same rows of up) */
    const uint8_t *crow[R];
    const S *srow[R];
    const int8_t *zrow[R];
    float tsc[R];
#pragma unroll
    for (int r = 0; r < RB; r++) {
        int64_t n = n0 + r < g.N ? n0 + r : g.N - 1; /* past the end: a valid row, never stored */
#pragma unroll
        for (int k = 0; k < NG; k++) {
            int wi = NG == 2 ? k : qk_seg(g, n);
            const pcu_qweight &w = g.w[wi];
            int64_t nl = n - g.seg_start[wi];
            crow[k * RB + r] = w.codes + nl * w.code_rs;
            srow[k * RB + r] = (const S *)w.scales + nl * w.s_rs;
            zrow[k * RB + r] = asym ? w.zeros + nl * w.z_rs : nullptr;
            tsc[k * RB + r] = 1.0f;
        }
    }
    float acc[MR][R], ss = 0.0f; /* ss: NORM, x's sum of squares */
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[m][r] = 0.0f;

    bool waited = !g.w_const;
    if (waited) dn_pdl_wait(); /* computed weights: they may not be written yet */
    if constexpr (KIND == QK_FP4) {
#pragma unroll
        for (int r = 0; r < RB; r++)
#pragma unroll
            for (int k = 0; k < NG; k++) {
                int64_t n = n0 + r < g.N ? n0 + r : g.N - 1;
                tsc[k * RB + r] = *g.w[NG == 2 ? k : qk_seg(g, n)].t;
            }
    }
    for (int64_t c0 = threadIdx.x; c0 < nch; c0 += (int64_t)nt * CPT) {
        /* all loads of the step first: codes, then each group's scale and
         * zero point as ps = s, pz = zp' s (f16/bf16), zp' (f32) */
        uint4 cv[R][CPT];
        float ps[R][CPT][F::GPC], pz[R][CPT][F::GPC];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int q = 0; q < CPT; q++) {
                int64_t c = c0 + (int64_t)q * nt;
                bool in = c < nch;
                cv[r][q] = in ? __ldcs((const uint4 *)(crow[r] + c * 16)) /* read once: don't keep */
                              : make_uint4(0, 0, 0, 0);
#pragma unroll
                for (int h = 0; h < F::GPC; h++) {
                    int64_t grp = in ? (c * F::C + h * (F::C / F::GPC)) >> g.lg_group : 0;
                    float s = qk_scale(srow[r][grp]);
                    ps[r][q][h] = s;
                    if constexpr (KIND != QK_FP4) {
                        float zp = (float)((asym ? (int)zrow[r][grp] : 0) - qmin);
                        pz[r][q][h] = sizeof(T) == 2 ? zp * s : zp;
                    }
                }
            }
        if (!waited) { /* the weights are constant: only x comes from the kernel before */
            dn_pdl_wait();
            waited = true;
        }
#pragma unroll
        for (int q = 0; q < CPT; q++) {
            int64_t c = c0 + (int64_t)q * nt;
            if (c >= nch) continue;
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                const int h = wd / WPG;
#pragma unroll
                for (int hw = 0; hw < 2; hw++) {
                    const int64_t k = c * F::C + (2 * wd + hw) * F::HW; /* first code of the half word */
                    float xv[MR][F::HW];
#pragma unroll
                    for (int m = 0; m < MR; m++)
                        if (m < g.M) qk_load_x<T, F::HW>(x + m * g.ldx + k, xv[m]);
                    if (NORM) { /* (SSL: x's sum of squares from the same piece) x * nw (or x * (1 + nw))
                                   rounded once to T, as the float GEMV */
                        float nv[F::HW];
                        qk_load_x<T, F::HW>((const T *)g.norm_w + k, nv);
#pragma unroll
                        for (int e = 0; e < F::HW; e++) {
                            if (SSL) ss = fmaf(xv[0][e], xv[0][e], ss);
                            xv[0][e] = qk_norm_scale<T>(xv[0][e], nv[e], g.norm_add_one);
                        }
                    }
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        uint32_t half = qk_word(cv[r][q], wd) >> (16 * hw);
                        float wv[F::HW];
                        if constexpr (KIND == QK_FP4) {
                            static_assert(F::HW == 4, "four E2M1 codes per half word");
                            wv[0] = qk_e2m1<0>(half) * ps[r][q][h] * tsc[r];
                            wv[1] = qk_e2m1<4>(half) * ps[r][q][h] * tsc[r];
                            wv[2] = qk_e2m1<8>(half) * ps[r][q][h] * tsc[r];
                            wv[3] = qk_e2m1<12>(half) * ps[r][q][h] * tsc[r];
                        } else {
                            float u[F::HW];
                            qk_codes<F::bits>(half, u);
#pragma unroll
                            for (int e = 0; e < F::HW; e++)
                                wv[e] = sizeof(T) == 2 ? fmaf(u[e], ps[r][q][h], -pz[r][q][h])
                                                       : (u[e] - pz[r][q][h]) * ps[r][q][h];
                        }
#pragma unroll
                        for (int m = 0; m < MR; m++) {
                            if (m < g.M) {
#pragma unroll
                                for (int e = 0; e < F::HW; e++) acc[m][r] = fmaf(wv[e], xv[m][e], acc[m][r]);
                            }
                        }
                    }
                }
            }
        }
    }

    if (!waited) dn_pdl_wait();
    dn_pdl_release(); /* what is left is the reduction and the stores */

    if (NORM && !SSL)
        for (int64_t i = threadIdx.x; i < g.K / dn_vec<T>::n; i += nt) {
            float xf[dn_vec<T>::n];
            dn_unpack(*(const uint4 *)(x + i * dn_vec<T>::n), xf, T());
#pragma unroll
            for (int e = 0; e < dn_vec<T>::n; e++) ss = fmaf(xf[e], xf[e], ss);
        }
    __shared__ float red[QK_MAX_THREADS / 32][MR * R + 1]; /* then the sum of squares */
    __shared__ float rstd; /* !SSL */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarp = nt >> 5;
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float t = dn_warp_sum(acc[m][r]);
            if (lane == 0) red[warp][m * R + r] = t;
        }
    if (NORM) {
        float t = dn_warp_sum(ss);
        if (lane == 0) red[warp][MR * R] = t;
    }
    __syncthreads();
    if (NORM && !SSL) {
        if (threadIdx.x == 0) {
            float t = 0.0f;
            for (int k = 0; k < nwarp; k++) t += red[k][MR * R];
            rstd = 1.0f / sqrtf(t / (float)g.K + g.norm_eps);
        }
        __syncthreads();
    }
    for (int t = threadIdx.x; t < MR * RB; t += nt) {
        int m = t / RB, r = t % RB;
        int64_t n = n0 + r;
        if (m >= g.M || n >= g.N) continue;
        float s = 0.0f, s2 = 0.0f;
        for (int k = 0; k < nwarp; k++) {
            s += red[k][m * R + r];
            if (NG == 2) s2 += red[k][m * R + RB + r];
        }
        if (NORM && !SSL) s *= rstd, s2 *= rstd;
        if (NORM && SSL) { /* 1 / rms of x, from the warps' sums of squares */
            float sq = 0.0f;
            for (int k = 0; k < nwarp; k++) sq += red[k][MR * R];
            const float inv = 1.0f / sqrtf(sq / (float)g.K + g.norm_eps);
            s *= inv, s2 *= inv;
        }
        if (NG == 2) {
            float v = dn_round<T>(pcu_act(dn_round<T>(s), g.act)) * dn_round<T>(s2);
            ((T *)g.out[0])[m * g.N + n] = dn_from<T>(v);
        } else if (g.mode == PCU_GEMV_RESID) {
            float v = (g.res_raw ? s : dn_round<T>(s)) + dn_load(g.res, g.res_dtype, m * g.res_sm + n * g.res_sn);
            ((T *)g.out[0])[m * g.N + n] = dn_from<T>(v);
        } else {
            int sg = qk_seg(g, n);
            int64_t wn = g.seg_start[sg + 1] - g.seg_start[sg];
            ((T *)g.out[sg])[m * wn + n - g.seg_start[sg]] = dn_from<T>(s);
        }
    }
}

template <typename T, int KIND, int MR, int RB, int NG, bool NORM, int LOADS>
static cudaError_t qgemv_go(cudaStream_t s, const pcu_qgemv &g) {
    constexpr int CPT = qk_cpt(MR, RB * NG, LOADS);
    int64_t per = (g.K / qk_kind<KIND>::C + CPT - 1) / CPT; /* chunks of a row per step */
    int threads = per >= QK_MAX_THREADS ? QK_MAX_THREADS : (int)((per + 31) / 32 * 32);
    if (threads < 32) threads = 32;
    return dn_launch_pdl(qgemv_kernel<T, KIND, MR, RB, NG, NORM, LOADS>, dim3((unsigned)((g.N + RB - 1) / RB)),
                         dim3((unsigned)threads), 0, s, g);
}

/* One row of x (decode): the rows a block takes and the 16-byte code
 * loads a thread has in flight (LOADS) by the weight's size.  Measured on
 * an H200 (bench_quant, Llama-3.2-1B's shapes, int4 / int8 groups of 32,
 * us per launch; every check passed in each build):
 *
 *   rows, loads         q/k/v        o + res      gate, up      down + res    LM head
 *   4, 8 (2 chunks)   6.15 / 6.12  5.78 / 5.33  16.02 / 18.71  9.33 / 12.76  107.0 / 138.6
 *   4, 4 (1 chunk)    5.21 / 6.65  4.54 / 4.48  15.96 / 18.71 10.90 / 11.56  123.4 / 148.6
 *   2, 4 (2 chunks)   5.84 / 6.06  4.81 / 4.74  14.84 / 17.11 10.59 / 13.07  107.9 / 150.3
 *   2, 2 (1 chunk)    4.91 / 5.55  3.88 / 3.84  14.80 / 17.13  9.19 / 10.11  118.0 / 148.0
 *   1, 1              6.96 / 6.63  5.25 / 5.32  16.55 / 18.41 13.62 / 13.40  158.0 / 180.5
 *   8, 4              7.46 / 7.53  6.84 / 6.19  18.21 / 24.35 10.96 / 12.66  122.0 / 173.7
 *
 * So an LM head (32768 rows or more, gate and up counted together) takes
 * 4 rows and 8 loads, other weights of 8 rows or more per multiprocessor
 * 2 rows and one chunk of each (Llama-3.2-1B's step: int4 703 -> 631 us
 * of GEMVs, int8 825 -> 725), fewer rows 1 row and 8 loads.  Up to 8 rows
 * of x (short prefill chunks, not tuned): one weight row per block. */
#define QK_WIDE_ROWS 32768

template <typename T, int KIND, int NG, bool NORM>
static cudaError_t qgemv_decode(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    if (g.N * NG >= QK_WIDE_ROWS) return qgemv_go<T, KIND, 1, 4, NG, NORM, 8>(s, g);
    if (g.N >= 8LL * sm_count) return qgemv_go<T, KIND, 1, 2, NG, NORM, 2>(s, g);
    return qgemv_go<T, KIND, 1, 1, NG, NORM, 8>(s, g);
}

template <typename T, int KIND, int NG>
static cudaError_t qgemv_rows(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    if (g.norm) return qgemv_decode<T, KIND, NG, true>(s, g, sm_count);
    if (g.M > 1) return qgemv_go<T, KIND, PCU_QGEMV_MAX_M, 1, NG, false, 8>(s, g);
    return qgemv_decode<T, KIND, NG, false>(s, g, sm_count);
}

template <typename T, int KIND> static cudaError_t qgemv_mode(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    return g.mode == PCU_GEMV_GATED ? qgemv_rows<T, KIND, 2>(s, g, sm_count) : qgemv_rows<T, KIND, 1>(s, g, sm_count);
}

/* ---- int4 decode GEMV: warps streaming rows through a copy ring ------------------ */

#ifndef QK4_OFF /* -DQK4_OFF: every int4 and int8 GEMV on the kernel above (the table's first row) */

/* One row of x (decode), int4 codes (int8: below).  The kernel above gives each block
 * a few rows and splits K over its threads, so a block makes one round
 * trip to memory (a 1 KB row is 64 chunks) and then computes with nothing
 * in flight; measured, it streamed 1.0-1.6 TB/s.  Here the grid is what
 * fits on the GPU at once and each warp walks items: a set of RW rows
 * (gated: RW rows of gate and the same of up) and one pass of 32 chunks
 * along K, lane l taking chunk 32 p + l.  The codes, scales and zero
 * points of an item are copied into a ring of Q4_STAGES slots in the
 * warp's shared memory (cp.async, 16 bytes a copy), issued Q4_STAGES - 1
 * items ahead, so a warp keeps three items in flight while it computes
 * one, and registers hold no loads.  A row set's passes may be split
 * over KS warps of a block (KS = 2, 4, 8: warp s of the group takes
 * passes s, s + KS, ...), for products with too few rows to give every
 * warp 4 of them; the group's sums then meet in shared memory at a named
 * barrier of its own, and its first warp stores them (q4gemv_rows).
 *
 * x (after the norm prologue's weight, rounded to T as the other GEMVs
 * do) goes into shared memory once per block.  The zero point comes out
 * of each 32-element chunk's dot product: sum (u - zp') s x = s (sum u x
 * - zp' sum x).  So W is not rounded per weight as ops.def writes it.
 *  - f32: x as floats with each chunk's sum; 3 instructions per weight
 *    (LOP3 and one FFMA make u exact, one FFMA accumulates).  The
 *    difference from ops.def's W is the fp32 rounding of the sums
 *    (bench_quant's f32 checks hold it within 1e-5).
 *  - f16/bf16: each chunk of x as integers v = rint(x 32639 / max|x|),
 *    so x = sx v to 15 bits of the chunk's largest value (f16 and bf16
 *    carry 11 and 8), v split into signed bytes h and l (v = 256 h + l;
 *    q4_xquant).  A code word of 8 nibbles gives two words of 4 bytes
 *    with one AND each (the low nibbles u, the high ones as 16 u), and
 *    dp4a multiplies 4 of them by 4 bytes of h or l at once: 8 LOP3 and
 *    16 dp4a per chunk and row, where the float path takes 64 FFMA and
 *    32 LOP3.  The chunk's integer sum is exact; one I2F and one FFMA
 *    scale it.  Its results differ from the float path's by one rounding
 *    of T at a few outputs (bench_quant: relative L2 2e-4 to 7e-4 against
 *    the bf16 reference, which the float path met exactly).
 *
 * Shared memory: f32 x at k + 4 (k / 32) (a lane's chunk starts 36
 * floats after its neighbour's, so its 16-byte reads are free of bank
 * conflicts) and the chunk sums; f16/bf16 x as one 80-byte record per
 * chunk (h, l, the chunk's scale and its halves' sums; 80 bytes apart, a
 * quarter warp's 16-byte reads meet no bank twice); then each warp's
 * ring.  It takes K a multiple of 1024 (whole passes) and scales and zero
 * points whose pass spans are whole, aligned 16-byte pieces; with f16/bf16
 * x, a general form (template parameter GEN) also takes K a multiple of
 * 32 with a partial last pass, scales and zero points copied in 4-byte
 * pieces (q4_form); others take the kernel above.
 *
 * int2 codes (f16/bf16 x only, B = 2): a pass is 2048 codes, a lane's
 * chunk 64, two x records, each with its own group when G = 32.  Each
 * 32-bit code word of 16 codes meets its 16 x values through 4 masks
 * (w & 0x03030303 << 2j keeps codes j, j + 4, ... as bytes 4^j u) and
 * dp4a against the record's words j, which q4_xquant lays out in that
 * order: 16 LOP3 and 32 dp4a per chunk and row, and 4^(3 - j) weights
 * the sums.  H200, Llama-3.2-1B int2 (groups of 32, bf16, the embedding
 * float): 462 tok/s on the kernel above, 1,872 on this one.
 *
 * int8 codes (f16/bf16 x only) take the same kernel (B = 8): a pass is
 * 512 codes, a lane's chunk 16, half of an x record, whose h and l are
 * then kept in order.  The codes are bytes already, so a chunk and row
 * is 8 dp4a and no LOP3; the sum 256 dh + dl - zp' (sum v) fits in 32
 * bits (at most 2.7e8).  H200, bench_quant, Llama-3.2-1B's shapes, int8
 * groups of 32, bf16, us per launch (qgemv_kernel -> this kernel): q/k/v
 * + norm 6.92 -> 5.04, o + residual 3.85 -> 3.79, gate/up + norm 19.95 ->
 * 11.44, down + residual 10.10 -> 8.41, LM head 138.6 -> 70.1 (4.1 TB/s);
 * Llama-3.2-1B int8 decoded 1,010 -> 1,312 tok/s (same call).
 *
 * Measured on an H200 (bench_quant, Llama-3.2-1B's shapes, int4 groups of
 * 32, bf16, us per launch; every check passed but the probe's):
 *
 *                               q/k/v+norm  o+res  gate/up+norm  down+res  LM head
 *   the kernel above               6.92     3.92      19.75        9.17     107.1
 *   ring, 4 slots, 256 threads     4.64     2.97      12.51        9.40      90.7
 *   ring, 3 slots                  4.73     3.21      14.25        9.89      88.7
 *   ring, 6 slots                  5.87     3.06      14.43       11.95     117.2
 *   ring, 128 threads              4.51     3.60      13.03       10.47      93.0
 *   ring, no dot product (probe)   3.57     2.24       7.25        6.22      50.0
 *   two FFMA chains per row        4.69     3.15      12.56        9.84      96.6
 *   items by a cursor, SEG flag    4.52     3.14      12.21        8.04      75.0
 *   f16/bf16 x as integers, dp4a   4.04     2.88       8.20        5.91      41.4
 *
 * The probe (codes copied and read, the dot product left out; its sums
 * are wrong) streams the LM head at 3.1 TB/s, so the ring keeps enough in
 * flight and the rest is instruction issue: Nsight Compute on the LM head
 * shows issue slots 66 % busy, the integer pipe the busiest (address
 * arithmetic of each item's copies), 1.6 eligible warps per scheduler.
 * Llama-3.2-1B int4 with the quantized embedding: 1,053 -> 1,131 tok/s.
 * The last row (as landed): items advance by a cursor instead of a
 * division, and a weight that is not stacked is indexed at compile time
 * (SEG false), not found per row among the segments; the LM head, all
 * copy-address work, gained 17 %.  The last row, with x as 16-bit
 * integers and dp4a (the cursor row and the last in one run, same
 * machine; every check passed): the LM head streams 3.76 TB/s of packed
 * bytes, and Llama-3.2-1B int4 with the quantized embedding decoded
 * 1,369 -> 1,722 tok/s. */
#ifndef Q4_THREADS
#define Q4_THREADS 256
#endif
#define Q4_WARPS (Q4_THREADS / 32)
#ifndef Q4_STAGES
#define Q4_STAGES 4 /* ring slots per warp */
#endif

/* Codes per pass: 32 lanes x 16 bytes of int4 or int8 codes. */
__host__ __device__ constexpr int q4_cpp(int bits) { return 32 * 128 / bits; }

/* Bytes of x in shared memory: f32, floats and chunk sums; f16/bf16,
 * one Q4_XREC-byte record per 32-element chunk (q4_xquant). */
static size_t q4_xbytes(int64_t K, int es) {
    return es == 4 ? (size_t)(K + K / 8 + K / 32) * sizeof(float) : (size_t)(K / 32) * Q4_XREC;
}

/* Bytes of one ring slot: S rows' codes, scales and zero points. */
static size_t q4_slot(int S, int64_t G, int es, bool asym, int bits) {
    int64_t ngs = q4_cpp(bits) / G;
    return (size_t)S * (512 + ngs * es + (asym ? ngs : 0));
}

/* A warp's place in its items: row set rs (every tw-th), pass p (every
 * KS-th from p0); next() steps to the following item without a division. */
template <int KS> struct q4_cursor {
    int rs, p, p0;
    __device__ __forceinline__ void next(int npass, int tw) {
        if ((p += KS) >= npass) p = p0, rs += tw;
    }
};

/* Issue the copies of item t into slot sl (nothing past the last row
 * set); always one commit group.  SEG: the rows are stacked weights (found
 * by qk_seg); otherwise weight 0 (gated: k), indexed at compile time.
 * GEN (the general form): a row has nch chunks of CPC codes, its last
 * pass may hold fewer than 32 (lanes past them copy no codes), and scales
 * and zero points come in 4-byte copies, the pass's groups only. */
template <int RW, int NG, bool SEG, int KS, bool GEN, int CPC>
__device__ __forceinline__ void q4_issue(const pcu_qgemv &g, uint8_t *sl, q4_cursor<KS> t, int nrs, int es, int ngs,
                                         bool asym, int nch) {
    if (t.rs < nrs) {
        constexpr int S = RW * NG;
        const int lane = threadIdx.x & 31;
        uint8_t *sc = sl + S * 512, *zp = sc + S * ngs * es;
        const int sb = ngs * es; /* scale bytes per row and pass */
#pragma unroll
        for (int r = 0; r < RW; r++) {
            int64_t n = (int64_t)t.rs * RW + r;
            n = n < g.N ? n : g.N - 1; /* past the end: a valid row, never stored */
#pragma unroll
            for (int k = 0; k < NG; k++) {
                const int wi = NG == 2 ? k : SEG ? qk_seg(g, n) : 0, i = k * RW + r;
                const pcu_qweight &w = g.w[wi];
                const int64_t nl = n - g.seg_start[wi];
                if constexpr (GEN) {
                    const int nc = min(32, nch - t.p * 32), gb = (nc * CPC) >> g.lg_group; /* chunks, groups */
                    const int64_t so = (nl * w.s_rs + (int64_t)t.p * ngs) * es, zo = nl * w.z_rs + (int64_t)t.p * ngs;
                    if (lane < nc)
                        dn_cp16(sl + (i * 32 + lane) * 16,
                                w.codes + nl * w.code_rs + ((int64_t)t.p * 32 + lane) * 16);
                    if (lane * 4 < gb * es) dn_cp4(sc + i * sb + lane * 4, (const uint8_t *)w.scales + so + lane * 4);
                    if (asym && lane * 4 < gb) dn_cp4(zp + i * ngs + lane * 4, w.zeros + zo + lane * 4);
                } else {
                    dn_cp16(sl + (i * 32 + lane) * 16, w.codes + nl * w.code_rs + ((int64_t)t.p * 32 + lane) * 16);
                    if (lane * 16 < sb)
                        dn_cp16(sc + i * sb + lane * 16,
                                (const uint8_t *)w.scales + (nl * w.s_rs + (int64_t)t.p * ngs) * es + lane * 16);
                    if (asym && lane * 16 < ngs)
                        dn_cp16(zp + i * ngs + lane * 16, w.zeros + nl * w.z_rs + (int64_t)t.p * ngs + lane * 16);
                }
            }
        }
    }
    dn_cp_commit();
}

template <typename T, int B, int RW, int NG, bool NORM, bool SEG, int KS, int XB, bool GEN>
__global__ void __launch_bounds__(Q4_THREADS) q4gemv_kernel(pcu_qgemv g, int slot) {
    constexpr int S = RW * NG, es = (int)sizeof(T), GPB = Q4_WARPS / KS; /* groups per block */
    constexpr bool DP = !std::is_same<T, float>::value; /* x as integers, dp4a */
    extern __shared__ float4 q4_shared[];
    float *xs = (float *)q4_shared, *xsum = xs + g.K + g.K / 8;
    uint8_t *xr = (uint8_t *)q4_shared; /* DP: x's chunk records */
    __shared__ float red[Q4_WARPS];
    __shared__ float part[KS > 1 ? 2 : 1][KS > 1 ? Q4_WARPS : 1][S]; /* KS > 1: the warps' sums, two row sets */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = warp % KS;
    uint8_t *ring = (DP ? xr + (g.K / 32) * Q4_XREC : (uint8_t *)(xsum + g.K / 32)) + (size_t)warp * Q4_STAGES * slot;
    constexpr int CPP = q4_cpp(B), CPC = CPP / 32; /* codes per pass, per chunk */
    static_assert(B == 4 || DP, "int8 and int2 codes take f16/bf16 x only");
    static_assert(!GEN || DP, "the general form takes f16/bf16 x only");
    const int nch = GEN ? (int)(g.K / CPC) : 0; /* GEN: chunks per row */
    const int npass = GEN ? (nch + 31) / 32 : (int)(g.K / CPP), nrs = (int)((g.N + RW - 1) / RW),
              ngs = (int)(CPP / g.G);
    /* the KS warps of group gw take the row sets gw, gw + tw, ...; warp sub of them passes sub, sub + KS, ... */
    const int gw = blockIdx.x * GPB + warp / KS, tw = gridDim.x * GPB;
    const int nit = gw < nrs ? ((nrs - 1 - gw) / tw + 1) * (npass / KS) : 0; /* this warp's items */
    const int qmin = pt_qfmt_qmin((pt_qfmt)g.fmt);
    const bool asym = pt_qfmt_asym((pt_qfmt)g.fmt);
    ST_START();

    if (!g.w_const) dn_pdl_wait(); /* computed weights: they may not be written yet */
    q4_cursor<KS> is = {gw, sub, sub}; /* the next item to copy */
#pragma unroll
    for (int j = 0; j < Q4_STAGES - 1; j++) {
        q4_issue<RW, NG, SEG, KS, GEN, CPC>(g, ring + (size_t)j * slot, is, nrs, es, ngs, asym, nch);
        is.next(npass, tw);
    }
    if (g.w_const) dn_pdl_wait();
    ST_WAITED();
    dn_pdl_release();

    /* the residual of the row set whose store comes first (its last
     * pass): loaded now, in the shadow of x's prologue, not after the sums
     * (H200, Llama-3.2-1B: int2 +0.9 %, int4 and int8 unchanged) */
    float res0 = 0.0f;
    int64_t rn0 = -1;
    if (NG == 1 && g.mode == PCU_GEMV_RESID && sub == 0 && lane < RW && nit > 0 && (int64_t)gw * RW + lane < g.N) {
        rn0 = (int64_t)gw * RW + lane;
        res0 = dn_load(g.res, g.res_dtype, rn0 * g.res_sn);
    }
    /* x into shared memory (norm: x * w rounded to T), chunk sums, x's sum
     * of squares.  XB vectors per thread are loaded before any is used:
     * x was just written by the kernel before, and each batch is a round
     * trip through a memory system busy with the weights' streams (H200,
     * step timeline: down's K = 8192 took 2.9 us in four batches of one) */
    constexpr int V = dn_vec<T>::n, L = 32 / V; /* elements per vector, lanes per chunk */
    const int64_t nv = g.K / V;
    float ss = 0.0f;
    for (int64_t b0 = 0; b0 < nv; b0 += XB * Q4_THREADS) {
        uint4 xu[XB], wu[XB];
#pragma unroll
        for (int i = 0; i < XB; i++) {
            const int64_t v = b0 + i * Q4_THREADS + threadIdx.x;
            xu[i] = wu[i] = make_uint4(0, 0, 0, 0);
            if (v < nv) {
                xu[i] = *(const uint4 *)((const T *)g.x + v * V); /* not __ldg: see dn_pdl_wait */
                if (NORM) wu[i] = *(const uint4 *)((const T *)g.norm_w + v * V);
            }
        }
#pragma unroll
        for (int i = 0; i < XB; i++) {
            const int64_t v0 = b0 + i * Q4_THREADS, v = v0 + threadIdx.x;
            if (v0 >= nv) break; /* the same for the whole block: q4_xquant's shuffles take every lane */
            float f[V], part = 0.0f;
            if (v < nv) {
                dn_unpack(xu[i], f, T());
                if (NORM) {
                    float nw[V];
                    dn_unpack(wu[i], nw, T());
#pragma unroll
                    for (int e = 0; e < V; e++) {
                        ss = fmaf(f[e], f[e], ss);
                        f[e] = qk_norm_scale<T>(f[e], nw[e], g.norm_add_one);
                    }
                }
                if constexpr (!DP) {
                    float4 *d = (float4 *)(xs + v * V + (v * V / 32) * 4);
#pragma unroll
                    for (int e = 0; e < V; e += 4) d[e / 4] = make_float4(f[e], f[e + 1], f[e + 2], f[e + 3]);
#pragma unroll
                    for (int e = 0; e < V; e++) part += f[e];
                }
            } else {
#pragma unroll
                for (int e = 0; e < V; e++) f[e] = 0.0f;
            }
            if constexpr (DP) {
                q4_xquant<B>(f, xr + (v / 4) * Q4_XREC, (int)(v % 4), v < nv);
            } else {
#pragma unroll
                for (int o = 1; o < L; o <<= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
                if (v < nv && lane % L == 0) xsum[v / L] = part;
            }
        }
    }
    float rstd = 1.0f;
    if (NORM) {
        float t = dn_warp_sum(ss);
        if (lane == 0) red[warp] = t;
    }
    __syncthreads();
    if (NORM) {
        float t = 0.0f;
#pragma unroll
        for (int k = 0; k < Q4_WARPS; k++) t += red[k];
        rstd = 1.0f / sqrtf(t / (float)g.K + g.norm_eps);
    }
    ST_MARK(3); /* x's prologue done */

    const int gl = (lane * CPC) >> g.lg_group; /* the lane's group within a pass */
    float acc[S];
#pragma unroll
    for (int r = 0; r < S; r++) acc[r] = 0.0f;
    q4_cursor<KS> t = {gw, sub, sub}; /* the item computed */
    int half = 0; /* KS > 1: which half of part the row set's sums go to */
    for (int j = 0; j < nit; j++, t.next(npass, tw)) {
        __syncwarp(); /* every lane is done with the slot the next copies overwrite */
        q4_issue<RW, NG, SEG, KS, GEN, CPC>(g, ring + (size_t)((j + Q4_STAGES - 1) % Q4_STAGES) * slot, is, nrs, es,
                                            ngs, asym, nch);
        is.next(npass, tw);
        dn_cp_wait<Q4_STAGES - 1>(); /* item j's copies are in */
        __syncwarp();             /* and the other lanes' (scales, zero points) */
        ST_MARK(4);               /* the first item's copies are in */
        const uint8_t *sl = ring + (size_t)(j % Q4_STAGES) * slot;
        const T *sc = (const T *)(sl + S * 512);
        const int8_t *zp = (const int8_t *)(sl + S * 512 + S * ngs * es);
        const int c = t.p * 32 + lane;
        uint4 cv[S];
#pragma unroll
        for (int r = 0; r < S; r++) cv[r] = ((const uint4 *)sl)[r * 32 + lane];
        if (GEN && c >= nch) {
            /* GEN: a lane past the row's last chunk (its last pass) adds nothing */
        } else if constexpr (DP && B == 2) {
            /* the chunk's 64 codes u span x records 2c and 2c + 1, two code
             * words each; mask j of a word keeps codes 4b + j as bytes 4^j u,
             * met by word j of the record's h and l: with x = sx v,
             * D64 = 64 sum u v = sum_j 4^(3 - j) (256 dh_j + dl_j), per record
             * (its own sx, and its own group when G = 32) */
#pragma unroll
            for (int hx = 0; hx < 2; hx++) {
                const uint8_t *rec = xr + (2 * c + hx) * Q4_XREC;
                const float4 sv = *(const float4 *)(rec + 64);
                int dh[S][4], dl[S][4];
#pragma unroll
                for (int r = 0; r < S; r++)
#pragma unroll
                    for (int j = 0; j < 4; j++) dh[r][j] = dl[r][j] = 0;
#pragma unroll
                for (int bk = 0; bk < 2; bk++) {
                    const uint4 hv = ((const uint4 *)rec)[bk], lv = ((const uint4 *)rec)[2 + bk];
#pragma unroll
                    for (int r = 0; r < S; r++) {
                        const uint32_t w = qk_word(cv[r], 2 * hx + bk);
#pragma unroll
                        for (int j = 0; j < 4; j++) {
                            const uint32_t t = w & (0x03030303u << (2 * j));
                            dh[r][j] = q4_dp4a(t, qk_word(hv, j), dh[r][j]);
                            dl[r][j] = q4_dp4a(t, qk_word(lv, j), dl[r][j]);
                        }
                    }
                }
                const int v64 = (__float_as_int(sv.y) + __float_as_int(sv.z)) * 64;
                const float sx = sv.x * 0.015625f;
                const int gx = (lane * CPC + 32 * hx) >> g.lg_group; /* the record's group within the pass */
#pragma unroll
                for (int r = 0; r < S; r++) {
                    const float sw = qk_scale(sc[r * ngs + gx]) * sx;
                    const int z = (asym ? (int)zp[r * ngs + gx] : 0) - qmin;
                    int d64 = -z * v64;
#pragma unroll
                    for (int j = 0; j < 4; j++) d64 += (dh[r][j] * 256 + dl[r][j]) * (1 << (6 - 2 * j));
                    acc[r] = fmaf(sw, (float)d64, acc[r]);
                }
            }
        } else if constexpr (DP && B == 8) {
            /* the chunk's 16 codes are bytes u: with x = sx v, v = 256 h + l,
             * D = sum u v = 256 dh + dl (half c % 2 of x's record c / 2) */
            const uint8_t *rec = xr + (c / 2) * Q4_XREC;
            const uint4 hv = ((const uint4 *)rec)[c % 2], lv = ((const uint4 *)rec)[2 + c % 2];
            const float4 sv = *(const float4 *)(rec + 64);
            int dh[S], dl[S];
#pragma unroll
            for (int r = 0; r < S; r++) dh[r] = dl[r] = 0;
#pragma unroll
            for (int wd = 0; wd < 4; wd++)
#pragma unroll
                for (int r = 0; r < S; r++) {
                    const uint32_t w = qk_word(cv[r], wd);
                    dh[r] = q4_dp4a(w, qk_word(hv, wd), dh[r]);
                    dl[r] = q4_dp4a(w, qk_word(lv, wd), dl[r]);
                }
            const int vs = __float_as_int(c % 2 ? sv.z : sv.y);
#pragma unroll
            for (int r = 0; r < S; r++) {
                const float s = qk_scale(sc[r * ngs + gl]) * sv.x;
                const int z = (asym ? (int)zp[r * ngs + gl] : 0) - qmin;
                acc[r] = fmaf(s, (float)(dh[r] * 256 + dl[r] - z * vs), acc[r]);
            }
        } else if constexpr (DP) {
            /* low nibbles as bytes u, high ones as bytes 16 u: with x = sx v,
             * v = 256 h + l, D16 = 16 sum u v = 4096 eh + 256 oh + 16 el + ol */
            const uint8_t *rec = xr + c * Q4_XREC;
            const uint4 h0 = ((const uint4 *)rec)[0], h1 = ((const uint4 *)rec)[1];
            const uint4 l0 = ((const uint4 *)rec)[2], l1 = ((const uint4 *)rec)[3];
            const float4 sv = *(const float4 *)(rec + 64);
            int eh[S], oh[S], el[S], ol[S];
#pragma unroll
            for (int r = 0; r < S; r++) eh[r] = oh[r] = el[r] = ol[r] = 0;
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                const uint4 &hv = wd < 2 ? h0 : h1, &lv = wd < 2 ? l0 : l1;
                const uint32_t xhe = qk_word(hv, (wd % 2) * 2), xho = qk_word(hv, (wd % 2) * 2 + 1);
                const uint32_t xle = qk_word(lv, (wd % 2) * 2), xlo = qk_word(lv, (wd % 2) * 2 + 1);
#pragma unroll
                for (int r = 0; r < S; r++) {
                    const uint32_t w = qk_word(cv[r], wd), a = w & 0x0f0f0f0fu, b = w & 0xf0f0f0f0u;
                    eh[r] = q4_dp4a(a, xhe, eh[r]);
                    oh[r] = q4_dp4a(b, xho, oh[r]);
                    el[r] = q4_dp4a(a, xle, el[r]);
                    ol[r] = q4_dp4a(b, xlo, ol[r]);
                }
            }
            const int v16 = (__float_as_int(sv.y) + __float_as_int(sv.z)) * 16;
            const float sx = sv.x * 0.0625f;
#pragma unroll
            for (int r = 0; r < S; r++) {
                const float s = qk_scale(sc[r * ngs + gl]) * sx;
                const int z = (asym ? (int)zp[r * ngs + gl] : 0) - qmin;
                const int d16 = eh[r] * 4096 + oh[r] * 256 + el[r] * 16 + ol[r] - z * v16;
                acc[r] = fmaf(s, (float)d16, acc[r]);
            }
        } else {
            const float *xc = xs + c * 36;
            float d[S];
#pragma unroll
            for (int r = 0; r < S; r++) d[r] = 0.0f;
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                const float4 xa = *(const float4 *)(xc + wd * 8), xb = *(const float4 *)(xc + wd * 8 + 4);
                const float xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
                for (int r = 0; r < S; r++) {
                    const uint32_t w = qk_word(cv[r], wd);
                    float u[8];
                    qk_codes<4>(w, u); /* the low half word's codes (the masks drop the rest) */
                    qk_codes<4>(w >> 16, u + 4);
#pragma unroll
                    for (int e = 0; e < 8; e++) d[r] = fmaf(u[e], xv[e], d[r]);
                }
            }
            const float xsc = xsum[c];
#pragma unroll
            for (int r = 0; r < S; r++) {
                const float s = qk_scale(sc[r * ngs + gl]);
                const float z = (float)((asym ? (int)zp[r * ngs + gl] : 0) - qmin);
                acc[r] = fmaf(s, fmaf(-z, xsc, d[r]), acc[r]);
            }
        }
        if (t.p + KS >= npass) { /* the row set is done: sum over the warp (and the group), store */
#pragma unroll
            for (int r = 0; r < S; r++) acc[r] = dn_warp_sum(acc[r]);
            if (KS > 1) {
                /* the group's warps meet at a barrier of their own; the sums
                 * alternate between two halves, so the next row set's may be
                 * written while the first warp still reads these */
                if (lane == 0)
#pragma unroll
                    for (int r = 0; r < S; r++) part[half][warp][r] = acc[r];
                asm volatile("bar.sync %0, %1;" ::"r"(1 + warp / KS), "r"(KS * 32) : "memory");
                if (sub == 0)
#pragma unroll
                    for (int r = 0; r < S; r++) {
                        float t2 = 0.0f;
#pragma unroll
                        for (int w = 0; w < KS; w++) t2 += part[half][warp + w][r];
                        acc[r] = t2;
                    }
                half ^= 1;
            }
#pragma unroll
            for (int r = 0; r < S; r++) acc[r] *= rstd;
#pragma unroll
            for (int r = 0; r < RW; r++) {
                const int64_t n = (int64_t)t.rs * RW + r;
                if (sub == 0 && lane == r && n < g.N) {
                    if (NG == 2) {
                        float v = dn_round<T>(pcu_act(dn_round<T>(acc[r]), g.act)) * dn_round<T>(acc[RW + r]);
                        ((T *)g.out[0])[n] = dn_from<T>(v);
                    } else if (g.mode == PCU_GEMV_RESID) {
                        float v = (g.res_raw ? acc[r] : dn_round<T>(acc[r])) +
                                  (n == rn0 ? res0 : dn_load(g.res, g.res_dtype, n * g.res_sn));
                        ((T *)g.out[0])[n] = dn_from<T>(v);
                    } else {
                        int sg = SEG ? qk_seg(g, n) : 0;
                        ((T *)g.out[sg])[n - g.seg_start[sg]] = dn_from<T>(acc[r]);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < S; r++) acc[r] = 0.0f;
            ST_MARK(5); /* the first row set stored */
        }
    }
    dn_cp_wait<0>();
    ST_END(1);
}

PCU_ST_EXPORT(pcu_st_take_quant)

/* Can the ring kernel take g (one row of x; int4, or int8 or int2 with
 * f16/bf16 x; bits: the codes')?  Q4_EXACT: whole passes along K, and
 * each row's scale and zero-point span of a pass in whole, aligned
 * 16-byte pieces.  Q4_GENERAL (f16/bf16 x; Gemma 3's K of 1152 and 6912,
 * Qwen3-4B's 2560 and 9728): K a multiple of 32 and of a lane's chunk,
 * the last pass possibly partial, the spans of every pass (the last's
 * included) in whole, aligned 4-byte pieces.  Q4_NONE: the kernel above.
 * -DQ4_GEN_OFF leaves the general form out (its products take the kernel
 * above, as before it). */
enum { Q4_NONE, Q4_EXACT, Q4_GENERAL };
static int q4_form(const pcu_qgemv &g, int bits) {
    const int64_t cpp = q4_cpp(bits), cpc = cpp / 32;
    if (bits != 4 && g.dtype == PETREL_DTYPE_F32) return Q4_NONE;
    if (g.M != 1 || g.G > cpp || g.K / cpc > INT32_MAX) return Q4_NONE;
    const int es = g.dtype == PETREL_DTYPE_F32 ? 4 : 2;
    const bool asym = pt_qfmt_asym((pt_qfmt)g.fmt);
    const int64_t ngs = cpp / g.G, tg = (g.K % cpp) / g.G; /* groups of a full pass, of the last one */
    bool exact = g.K % cpp == 0 && (ngs * es) % 16 == 0 && !(asym && ngs % 16);
    bool gen = g.dtype != PETREL_DTYPE_F32 && g.K % 32 == 0 && g.K % cpc == 0 && ngs * es <= 32 * 4 &&
               (ngs * es) % 4 == 0 && (tg * es) % 4 == 0 && !(asym && (ngs % 4 || tg % 4));
    for (int i = 0; i < g.nw; i++) {
        const pcu_qweight &w = g.w[i];
        if ((uintptr_t)w.scales % 16 || (w.s_rs * es) % 16) exact = false;
        if (asym && ((uintptr_t)w.zeros % 16 || w.z_rs % 16)) exact = false;
        if ((uintptr_t)w.scales % 4 || (w.s_rs * es) % 4) gen = false;
        if (asym && ((uintptr_t)w.zeros % 4 || w.z_rs % 4)) gen = false;
    }
#ifdef Q4_GEN_OFF
    gen = false;
#endif
    return exact ? Q4_EXACT : gen ? Q4_GENERAL : Q4_NONE;
}

template <typename T, int B, int RW, int NG, bool NORM, bool SEG, bool GEN, int KS = 1>
static cudaError_t q4gemv_go(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    /* x in batches of 4 vectors per thread where K spans 4 (down's K of
     * 8192 at bf16), else 1 (no registers held for nothing).  H200,
     * Llama-3.2-1B, both in one call: int4 with the quantized embedding
     * +1.0 %, int8 +0.8 %, int2 -0.8 % (so int2 keeps batches of 1); on a
     * machine that ran the whole step 26 % slower than the others of its
     * kind, so to be measured again on another */
    constexpr bool BIG = !NORM && NG == 1 && !SEG && B != 2 && !GEN;
    auto k = BIG && g.K >= 4 * Q4_THREADS * dn_vec<T>::n ? q4gemv_kernel<T, B, RW, NG, NORM, SEG, KS, BIG ? 4 : 1, GEN>
                                                         : q4gemv_kernel<T, B, RW, NG, NORM, SEG, KS, 1, GEN>;
    const size_t slot = q4_slot(RW * NG, g.G, (int)sizeof(T), pt_qfmt_asym((pt_qfmt)g.fmt), B);
    const size_t smem = q4_xbytes(g.K, (int)sizeof(T)) + (size_t)Q4_WARPS * Q4_STAGES * slot;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    int per_sm = 0;
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, Q4_THREADS, smem);
    if (e != cudaSuccess) return e;
    if (per_sm < 1) return cudaErrorInvalidConfiguration;
    const int64_t nrs = (g.N + RW - 1) / RW, most = (int64_t)sm_count * per_sm;
    const int64_t blocks = (nrs * KS + Q4_WARPS - 1) / Q4_WARPS;
    return dn_launch_pdl(k, dim3((unsigned)(blocks < most ? blocks : most)), dim3(Q4_THREADS), smem, s, g, (int)slot);
}

/* Rows per item: as many as still give every warp of a full grid a row
 * set (gated: at most 2 of each weight).  Products with fewer rows (q/k/v,
 * o, down) keep 4 rows per item and split each row set's passes over KS
 * warps of a block (their sums meet in shared memory at a barrier of the
 * group's own), when that still keeps at least Q4_KS_FILL percent of the
 * warps busy; otherwise they take fewer rows per item.  On an H200 alone
 * (bench_quant) Llama-3.2-1B's q/k/v, o and down (KS 2, 2, 4) ran as fast
 * as with 1 row per item (4.58 / 3.06 / 8.08 us against 4.55 / 3.08 /
 * 7.77), but in the decode step Llama-3.2-1B int4 with the quantized
 * embedding went from 1,236 to 1,368 tok/s (same machine, two runs
 * each; -DQ4_KS_FILL=0 turns the split off).  A product whose row sets
 * still fit one wave of the full grid with 4 or 8 warps each takes the
 * most (Llama-3.2-1B's down, K = 8192: KS 4 instead of 2, each warp two
 * items instead of four): H200, the decode step of int4 with the
 * quantized embedding 1,795 -> 1,836 tok/s, int8 1,411 -> 1,425 (same
 * call, two runs each). */
#ifndef Q4_KS_FILL
#define Q4_KS_FILL 45
#endif
template <typename T, int B, int NG, bool NORM, bool SEG, bool GEN>
static cudaError_t q4gemv_rows(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    const int64_t cpp = q4_cpp(B), warps = (int64_t)sm_count * 2 * Q4_WARPS, npass = (g.K + cpp - 1) / cpp;
    if (NG == 1 && g.N / 4 >= warps) return q4gemv_go<T, B, NG == 1 ? 4 : 2, NG, NORM, SEG, GEN>(s, g, sm_count);
    if (NG == 1 && Q4_KS_FILL > 0) {
        const int64_t need = warps * Q4_KS_FILL / 100, nrs = (g.N + 3) / 4;
        if (npass % 8 == 0 && nrs * 8 <= warps) return q4gemv_go<T, B, 4, NG, NORM, SEG, GEN, 8>(s, g, sm_count);
        if (npass % 4 == 0 && nrs * 4 <= warps) return q4gemv_go<T, B, 4, NG, NORM, SEG, GEN, 4>(s, g, sm_count);
        if (npass % 2 == 0 && nrs * 2 >= need) return q4gemv_go<T, B, 4, NG, NORM, SEG, GEN, 2>(s, g, sm_count);
        if (npass % 4 == 0 && nrs * 4 >= need) return q4gemv_go<T, B, 4, NG, NORM, SEG, GEN, 4>(s, g, sm_count);
        if (npass % 8 == 0 && nrs * 8 >= need) return q4gemv_go<T, B, 4, NG, NORM, SEG, GEN, 8>(s, g, sm_count);
    }
    if (g.N / 2 >= warps) return q4gemv_go<T, B, 2, NG, NORM, SEG, GEN>(s, g, sm_count);
    return q4gemv_go<T, B, 1, NG, NORM, SEG, GEN>(s, g, sm_count);
}

template <typename T, int B, bool GEN> static cudaError_t q4gemv(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    if (g.mode == PCU_GEMV_GATED)
        return g.norm ? q4gemv_rows<T, B, 2, true, false, GEN>(s, g, sm_count)
                      : q4gemv_rows<T, B, 2, false, false, GEN>(s, g, sm_count);
    if (g.nw > 1) /* stacked weights (PLAIN) */
        return g.norm ? q4gemv_rows<T, B, 1, true, true, GEN>(s, g, sm_count)
                      : q4gemv_rows<T, B, 1, false, true, GEN>(s, g, sm_count);
    return g.norm ? q4gemv_rows<T, B, 1, true, false, GEN>(s, g, sm_count)
                  : q4gemv_rows<T, B, 1, false, false, GEN>(s, g, sm_count);
}

#endif /* QK4_OFF */

/* An integer format's GEMV: the ring kernel when it takes g (int4; int8
 * and int2 with f16/bf16 x only), else the kernel above. */
template <typename T, int KIND> static cudaError_t qgemv_int(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
#ifndef QK4_OFF
    constexpr int B = qk_kind<KIND>::bits;
    if constexpr (B == 4 || !std::is_same<T, float>::value) {
        const int form = q4_form(g, B);
        if (form == Q4_EXACT) return q4gemv<T, B, false>(s, g, sm_count);
        if constexpr (!std::is_same<T, float>::value)
            if (form == Q4_GENERAL) return q4gemv<T, B, true>(s, g, sm_count);
    }
#endif
    return qgemv_mode<T, KIND>(s, g, sm_count);
}

template <typename T> static cudaError_t qgemv_kind(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    switch (qk_kind_of(g.fmt)) {
    case QK_INT8: return qgemv_int<T, QK_INT8>(s, g, sm_count);
    case QK_INT4: return qgemv_int<T, QK_INT4>(s, g, sm_count);
    case QK_INT2: return qgemv_int<T, QK_INT2>(s, g, sm_count);
    default: return qgemv_mode<T, QK_FP4>(s, g, sm_count);
    }
}

/* Codes per chunk and parameter sets per chunk of format fmt. */
static void qk_chunk(int fmt, int *C, int *GPC) {
    switch (qk_kind_of(fmt)) {
    case QK_INT8: *C = qk_kind<QK_INT8>::C, *GPC = qk_kind<QK_INT8>::GPC; break;
    case QK_INT4: *C = qk_kind<QK_INT4>::C, *GPC = qk_kind<QK_INT4>::GPC; break;
    case QK_INT2: *C = qk_kind<QK_INT2>::C, *GPC = qk_kind<QK_INT2>::GPC; break;
    default: *C = qk_kind<QK_FP4>::C, *GPC = qk_kind<QK_FP4>::GPC; break;
    }
}

extern "C" bool pcu_qgemv_fits(const pcu_qgemv *g) {
    if (g->fmt < 0 || g->fmt >= PT_QFMT_COUNT || g->M < 1 || g->M > PCU_QGEMV_MAX_M || g->K < 1 || !g->x)
        return false;
    if (g->dtype != PETREL_DTYPE_F32 && g->dtype != PETREL_DTYPE_F16 && g->dtype != PETREL_DTYPE_BF16) return false;
    if (g->mode == PCU_GEMV_PLAIN ? g->nw < 1 || g->nw > PCU_QGEMV_MAX_W
                                  : g->nw != (g->mode == PCU_GEMV_GATED ? 2 : 1) || !g->out[0])
        return false;
    if (g->mode == PCU_GEMV_RESID && !g->res) return false;
    if (g->norm && (g->M != 1 || g->mode == PCU_GEMV_RESID || !g->norm_w || (uintptr_t)g->norm_w % 16)) return false;
    int C, GPC;
    qk_chunk(g->fmt, &C, &GPC);
    int64_t es = g->dtype == PETREL_DTYPE_F32 ? 4 : 2, ng = g->G > 0 ? g->K / g->G : 0;
    bool fp4 = g->fmt == PT_QFMT_NVFP4;
    if (g->G < C / GPC || (g->G & (g->G - 1)) || g->K % g->G || g->K % C) return false;
    if ((uintptr_t)g->x % 16 || (g->ldx * es) % 16 || g->ldx < g->K) return false;
    for (int i = 0; i < g->nw; i++) {
        const pcu_qweight *w = &g->w[i];
        if (w->N < 0 || (w->N > 0 && (!w->codes || !w->scales)) || (uintptr_t)w->codes % 16 || w->code_rs % 16 ||
            w->sdt != (fp4 ? PETREL_DTYPE_U8 : g->dtype) || (w->s_cs != 1 && ng > 1) ||
            pt_qfmt_asym((pt_qfmt)g->fmt) != (w->zeros != NULL) || (w->zeros && w->z_cs != 1 && ng > 1) ||
            fp4 != (w->t != NULL) || (g->mode == PCU_GEMV_PLAIN && w->N > 0 && !g->out[i]))
            return false;
    }
    return g->mode != PCU_GEMV_GATED || g->w[0].N == g->w[1].N;
}

/* The least lg with 2^lg >= G: log2 of a power-of-two group size. */
static int32_t qk_log2(int64_t G) {
    int32_t lg = 0;
    while ((1LL << lg) < G) lg++;
    return lg;
}

extern "C" cudaError_t pcu_qgemv_launch(cudaStream_t s, const pcu_qgemv *g, int sm_count) {
    if (!pcu_qgemv_fits(g)) return cudaErrorInvalidValue;
    pcu_qgemv a = *g;
    /* PLAIN stacks the weights' rows; gate and up share one row space */
    a.seg_start[0] = 0;
    for (int i = 0; i < a.nw; i++) a.seg_start[i + 1] = a.seg_start[i] + (a.mode == PCU_GEMV_PLAIN ? a.w[i].N : 0);
    a.N = a.mode == PCU_GEMV_PLAIN ? a.seg_start[a.nw] : a.w[0].N;
    a.lg_group = qk_log2(a.G);
    if (a.N == 0) return cudaSuccess;
    switch (a.dtype) {
    case PETREL_DTYPE_F32: return qgemv_kind<float>(s, a, sm_count);
    case PETREL_DTYPE_F16: return qgemv_kind<__half>(s, a, sm_count);
    default: return qgemv_kind<__nv_bfloat16>(s, a, sm_count);
    }
}

/* ---- dequantization: panels and embedding rows ----------------------------------------- */

/* An integer format's weight in float from its stored code u: (u + qmin -
 * zero point) * scale, as ops.def defines it. */
__device__ __forceinline__ float qk_affine(unsigned u, int qmin, int zp, float s) {
    return (float)((int)u + qmin - zp) * s;
}

/* W[n, k] in float as ops.def defines it, computed as the CPU's reference
 * does (cpu/ops/quant.c, q_row); t: nvfp4's tensor scale. */
__device__ __forceinline__ float qk_value(const pcu_qweight &w, int fmt, int32_t G, int64_t n, int32_t k, float t) {
    unsigned u = pt_q_code(w.codes + n * w.code_rs, k, pt_qfmt_bits((pt_qfmt)fmt));
    int64_t grp = k / G;
    if (fmt == PT_QFMT_NVFP4)
        return pt_e2m1_to_float(u) * pt_e4m3_to_float(((const uint8_t *)w.scales)[n * w.s_rs + grp * w.s_cs]) * t;
    float s = dn_load(w.scales, w.sdt, n * w.s_rs + grp * w.s_cs);
    int zp = w.zeros ? w.zeros[n * w.z_rs + grp * w.z_cs] : 0;
    return qk_affine(u, pt_qfmt_qmin((pt_qfmt)fmt), zp, s);
}

/* panel[r, k] = W[n0 + r, k] rounded to T: rows along y, K along x. */
template <typename T>
__global__ void qdequant_kernel(int32_t fmt, int32_t G, int32_t K, pcu_qweight w, int64_t n0, int64_t rows, T *panel) {
    float t = w.t ? *w.t : 1.0f;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
        for (int32_t k = blockIdx.x * blockDim.x + threadIdx.x; k < K; k += gridDim.x * blockDim.x)
            panel[r * K + k] = dn_from<T>(qk_value(w, fmt, G, n0 + r, k, t));
}

/* The same panel a 16-byte chunk of codes per thread (integer formats:
 * 16, 32 or 64 codes, at most 4 groups of them), its group parameters
 * loaded once and its values stored as 16-byte vectors; each value is
 * qk_value's, rounded to T the same way.  The element-wise kernel above
 * loads a code byte, a scale and a zero point per value.  H200: Llama-
 * 3.2-1B's gate panel (8192 x 2048, int4 to bf16) in 24.7 us (1.36 TB/s
 * written); Llama-3.2-1B int4 with the quantized embedding, time to first
 * token after 128 tokens 13.4 -> 5.4 ms, 512 tokens prefilled at 24,300 ->
 * 39,100 tok/s (bench/RESULTS.md, 2026-12-04 (late, prefill)). */
template <typename T, int BITS>
__global__ void qdequant_vec_kernel(int32_t fmt, int32_t lg, int32_t K, pcu_qweight w, int64_t n0, int64_t rows,
                                    T *panel) {
    constexpr int C = 128 / BITS;                   /* codes per chunk */
    constexpr int NV = C * (int)sizeof(T) / 16;     /* 16-byte stores per chunk */
    const int cpr = K / C, ngc = C >> lg > 1 ? C >> lg : 1; /* chunks per row, groups per chunk (<= 4) */
    const int qmin = pt_qfmt_qmin((pt_qfmt)fmt);
    const int64_t total = rows * cpr;
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < total; c += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = c / cpr, n = n0 + r;
        const int j = (int)(c - r * cpr), g0 = (j * C) >> lg;
        const uint4 v = *(const uint4 *)(w.codes + n * w.code_rs + (int64_t)j * 16);
        const uint32_t word[4] = {v.x, v.y, v.z, v.w};
        float sc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        int zp[4] = {0, 0, 0, 0};
#pragma unroll
        for (int q = 0; q < 4; q++)
            if (q < ngc) {
                sc[q] = dn_load(w.scales, w.sdt, n * w.s_rs + (int64_t)(g0 + q) * w.s_cs);
                zp[q] = w.zeros ? w.zeros[n * w.z_rs + (int64_t)(g0 + q) * w.z_cs] : 0;
            }
        union {
            T t[C];
            uint4 u[NV];
        } out;
#pragma unroll
        for (int e = 0; e < C; e++) {
            const unsigned u = (word[(e * BITS) / 32] >> ((e * BITS) % 32)) & ((1u << BITS) - 1u);
            const int q = e >> lg; /* the chunk starts a group (G <= C) or lies in one (q = 0) */
            const float sq = q == 0 ? sc[0] : q == 1 ? sc[1] : q == 2 ? sc[2] : sc[3]; /* registers, no local memory */
            const int zq = q == 0 ? zp[0] : q == 1 ? zp[1] : q == 2 ? zp[2] : zp[3];
            out.t[e] = dn_from<T>(qk_affine(u, qmin, zq, sq));
        }
        uint4 *dst = (uint4 *)(panel + r * K + (int64_t)j * C);
#pragma unroll
        for (int i = 0; i < NV; i++) dst[i] = out.u[i];
    }
}

template <typename T>
static cudaError_t qdequant_vec(cudaStream_t s, int32_t fmt, int32_t lg, int32_t K, const pcu_qweight *w, int64_t n0,
                                int64_t rows, T *panel, int sm_count) {
    const int bits = pt_qfmt_bits((pt_qfmt)fmt);
    const int64_t chunks = rows * (K / (128 / bits)), most = (int64_t)sm_count * 8;
    const int64_t blocks = (chunks + DK_THREADS - 1) / DK_THREADS;
    const unsigned grid = (unsigned)(blocks < most ? blocks : most);
    switch (bits) {
    case 8: qdequant_vec_kernel<T, 8><<<grid, DK_THREADS, 0, s>>>(fmt, lg, K, *w, n0, rows, panel); break;
    case 4: qdequant_vec_kernel<T, 4><<<grid, DK_THREADS, 0, s>>>(fmt, lg, K, *w, n0, rows, panel); break;
    default: qdequant_vec_kernel<T, 2><<<grid, DK_THREADS, 0, s>>>(fmt, lg, K, *w, n0, rows, panel); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t pcu_qdequant_launch(cudaStream_t s, int32_t fmt, int64_t G, int64_t K, const pcu_qweight *w,
                                           int64_t n0, int64_t rows, void *panel, int32_t dtype, int sm_count) {
    if (fmt < 0 || fmt >= PT_QFMT_COUNT || G < 1 || K < 0 || K > INT32_MAX || rows < 0 || n0 < 0 || n0 + rows > w->N)
        return cudaErrorInvalidValue;
    if (rows == 0 || K == 0) return cudaSuccess;
    /* integer codes in whole 16-byte chunks, 16-byte aligned (rows of the
     * panel too), a power-of-two group size of at least a quarter chunk */
    const int bits = pt_qfmt_bits((pt_qfmt)fmt), C = fmt == PT_QFMT_NVFP4 ? 0 : 128 / bits;
    const int32_t lg = qk_log2(G);
    if (C && K % C == 0 && (1LL << lg) == G && 4 * G >= C && (uintptr_t)w->codes % 16 == 0 && w->code_rs % 16 == 0 &&
        (uintptr_t)panel % 16 == 0 && sm_count > 0) {
        switch (dtype) {
        case PETREL_DTYPE_F32:
            return qdequant_vec<float>(s, fmt, lg, (int32_t)K, w, n0, rows, (float *)panel, sm_count);
        case PETREL_DTYPE_F16:
            return qdequant_vec<__half>(s, fmt, lg, (int32_t)K, w, n0, rows, (__half *)panel, sm_count);
        case PETREL_DTYPE_BF16:
            return qdequant_vec<__nv_bfloat16>(s, fmt, lg, (int32_t)K, w, n0, rows, (__nv_bfloat16 *)panel, sm_count);
        default: return cudaErrorInvalidValue;
        }
    }
    dim3 grid((unsigned)((K + DK_THREADS - 1) / DK_THREADS < 64 ? (K + DK_THREADS - 1) / DK_THREADS : 64),
              (unsigned)(rows < 65535 ? rows : 65535));
#define QD_GO(T) qdequant_kernel<T><<<grid, DK_THREADS, 0, s>>>(fmt, (int32_t)G, (int32_t)K, *w, n0, rows, (T *)panel)
    switch (dtype) {
    case PETREL_DTYPE_F32: QD_GO(float); break;
    case PETREL_DTYPE_F16: QD_GO(__half); break;
    case PETREL_DTYPE_BF16: QD_GO(__nv_bfloat16); break;
    default: return cudaErrorInvalidValue;
    }
#undef QD_GO
    return cudaGetLastError();
}

/* Output rows along x (the row of W at index i, or zeros), each row's
 * elements split over gridDim.y blocks: a decode step's single row takes
 * several multiprocessors, not one block's eight rounds. */
__global__ void qembedding_kernel(int32_t fmt, int32_t G, int32_t K, pcu_qweight w, const void *idx, int32_t idt,
                                  int64_t nidx, void *out, int32_t dtype) {
    float t = w.t ? *w.t : 1.0f;
    for (int64_t i = blockIdx.x; i < nidx; i += gridDim.x) {
        int64_t n = dk_wrap(dk_load_i64(dk_at(idx, idt, i), idt), w.N);
        for (int32_t k = blockIdx.y * blockDim.x + threadIdx.x; k < K; k += gridDim.y * blockDim.x)
            dn_store(out, dtype, i * K + k, n < 0 ? 0.0f : qk_value(w, fmt, G, n, k, t));
    }
}

extern "C" cudaError_t pcu_qembedding_launch(cudaStream_t s, int32_t fmt, int64_t G, int64_t K, const pcu_qweight *w,
                                             const void *idx, int32_t idt, int64_t nidx, void *out, int32_t dtype) {
    if (fmt < 0 || fmt >= PT_QFMT_COUNT || G < 1 || K < 0 || K > INT32_MAX || nidx < 0) return cudaErrorInvalidValue;
    if (nidx == 0 || K == 0) return cudaSuccess;
    int threads = 32;
    while (threads < 128 && threads < K) threads *= 2;
    int64_t parts = (K + threads - 1) / threads;
    dim3 grid((unsigned)(nidx < 65536 ? nidx : 65536), (unsigned)(parts < 16 ? parts : 16));
    qembedding_kernel<<<grid, threads, 0, s>>>(fmt, (int32_t)G, (int32_t)K, *w, idx, idt, nidx, out, dtype);
    return cudaGetLastError();
}
