/*
** bench_kernels.cu -- micro-benchmark of the small per-layer CUDA kernels
** of a Llama-3.2-1B decode step (bf16): the row norm (petrel.rms_norm),
** petrel.rope, and petrel.sdpa_cache's decode step at several numbers of
** valid cache positions, without and with the executor's bound on the
** positions (pcu_attn.keys_below, also a wrong one); also the norm's long-row path (checked only),
** prefill attention (the tensor-core kernel in bf16 and f16, causal, with
** a bool mask over a static cache whose unseen rows hold NaN, and without
** a mask; the general kernel, unsplit and split) and
** the output top-k of sampling (its keys against a host sort, exactly),
** and the decode step with its rope and q/k norm at Qwen3-0.6B's shape.
**
** Each case runs once and is checked against a host reference computed in
** double from the same bf16 inputs (relative L2 error and max |error| /
** max |reference|), then timed with CUDA events over REPS launches
** captured in one CUDA graph (as the decode step runs) and, for
** comparison, launched one by one on a stream.
**
** Standalone: it compiles petrel's kernel files directly and calls their
** launchers, no petrel library.  Build and run from the repository root:
**   nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_kernels.cu \
**     src/backends/cuda/ops/norm_k.cu src/backends/cuda/ops/fused_k.cu \
**     src/backends/cuda/ops/sdpa_k.cu src/backends/cuda/ops/argmax_k.cu \
**     -o /tmp/bench_kernels && /tmp/bench_kernels
** Exit status 1 when a check fails.  Built with -DPCU_ATTN_TRACE (for
** this program only), the decode attention kernel records clock stamps at
** its phases and each decode case prints them for its last launch: cycles
** of the wait for the kernel before, the prologue, the key loop, the
** warps' partials, the block merge with the cluster barrier and block 0's
** merge of the cluster.
*/
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "bench_util.h"

#include "backends/cuda/ops/argmax_k.h"
#include "backends/cuda/ops/fused_k.h"
#include "backends/cuda/ops/norm_k.h"
#include "backends/cuda/ops/sdpa_k.h"
#include "petrel.h"

#ifdef PCU_ATTN_TRACE
extern "C" void pcu_attn_trace_dump(int nblocks);
#endif

#ifndef REPS
#define REPS 200
#endif

static float bfr(double v) { return bf2f(f2bf((float)v)); } /* v rounded to bf16 */

static uint16_t f2h(float f) { /* to f16 bits (round to nearest even) */
    __half_raw r = __float2half_rn(f);
    return r.x;
}
static float h2f(uint16_t b) {
    __half_raw r;
    r.x = b;
    return __half2float(__half(r));
}

static float frand(void) { return (float)(urand() & 0xffffff) / 8388608.0f - 1.0f; } /* uniform in [-1, 1) */
static std::vector<uint16_t> bf_random(size_t n, float scale) {
    std::vector<uint16_t> v(n);
    for (auto &x : v) x = f2bf(frand() * scale);
    return v;
}

/* ---- device buffers ----------------------------------------------------------- */

template <typename T> static T *dev_copy(const std::vector<T> &h) {
    T *d;
    CK(cudaMalloc(&d, h.size() * sizeof(T) + 16));
    CK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T> static std::vector<T> host_copy(const T *d, size_t n) {
    std::vector<T> h(n);
    CK(cudaDeviceSynchronize()); /* the kernels run on a non-blocking stream: cudaMemcpy does not wait for them */
    CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

/* ---- checking and timing ---------------------------------------------------------- */

/* Compare got against ref; tol on the relative L2 error. */
static void check(const char *what, const std::vector<float> &got, const std::vector<double> &ref, double tol) {
    double num = 0, den = 0, maxd = 0, maxr = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double d = (double)got[i] - ref[i];
        num += d * d, den += ref[i] * ref[i];
        maxd = fmax(maxd, fabs(d)), maxr = fmax(maxr, fabs(ref[i]));
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    bool ok = rel <= tol && std::isfinite(rel);
    printf("  check %-44s rel L2 %.2e  max|err|/max|ref| %.2e  %s\n", what, rel, maxr > 0 ? maxd / maxr : maxd,
           ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
}

/* Per-launch time in microseconds of enqueue(): REPS of it captured in a
 * CUDA graph, and REPS of it launched on the stream; returns the first. */
template <class F> static double bench(const char *what, cudaStream_t s, F enqueue) {
    double us_graph = graph_us(s, REPS, [&](int) { return enqueue(); });
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, s));
    for (int i = 0; i < REPS; i++) CK(enqueue());
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms_stream;
    CK(cudaEventElapsedTime(&ms_stream, e0, e1));
    printf("  time  %-44s %7.2f us/launch in a graph, %7.2f us on a stream\n", what, us_graph,
           1e3f * ms_stream / REPS);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return us_graph;
}

/* ---- row norm ------------------------------------------------------------------------ */

/* petrel.rms_norm as HF Llama: y = w * bf16(x * rsqrt(mean(x^2) + eps)), bf16. */
static void case_rms_norm(cudaStream_t s, int64_t D) {
    printf("rms_norm bf16, one row of D = %lld\n", (long long)D);
    auto x = bf_random((size_t)D, 2.0f), w = bf_random((size_t)D, 1.0f);
    uint16_t *dx = dev_copy(x), *dw = dev_copy(w), *dout;
    CK(cudaMalloc(&dout, (size_t)D * 2));
    pcu_rownorm a = {};
    a.x = dx, a.xdt = PETREL_DTYPE_BF16, a.out = dout, a.odt = PETREL_DTYPE_BF16, a.M = 1, a.D = D;
    a.w = dw, a.wdt = PETREL_DTYPE_BF16, a.eps = 1e-5f, a.rms = true, a.norm_dtype = PETREL_DTYPE_BF16;
    CK(pcu_rownorm_launch(s, &a));
    auto got = host_copy(dout, (size_t)D);
    double ss = 0;
    for (auto v : x) ss += (double)bf2f(v) * bf2f(v);
    double rstd = 1.0 / sqrt(ss / (double)D + 1e-5);
    std::vector<double> ref((size_t)D);
    std::vector<float> g((size_t)D);
    for (int64_t d = 0; d < D; d++) ref[d] = bfr(bfr(bf2f(x[d]) * rstd) * bf2f(w[d])), g[d] = bf2f(got[d]);
    check("rms_norm", g, ref, 1e-2);
    bench("rms_norm", s, [&] { return pcu_rownorm_launch(s, &a); });
    CK(cudaFree(dx));
    CK(cudaFree(dw));
    CK(cudaFree(dout));
}

/* Layer norm in f32 over a row longer than the kernel keeps in registers
 * (the re-reading tail path), with weight and bias. */
static void case_layer_norm_long(cudaStream_t s, int64_t M, int64_t D) {
    printf("layer_norm f32, %lld rows of D = %lld (long-row path)\n", (long long)M, (long long)D);
    std::vector<float> x((size_t)(M * D)), w((size_t)D), b((size_t)D);
    for (auto &v : x) v = frand() * 3.0f + 0.5f;
    for (auto &v : w) v = frand();
    for (auto &v : b) v = frand();
    float *dx = dev_copy(x), *dw = dev_copy(w), *db = dev_copy(b), *dout;
    CK(cudaMalloc(&dout, (size_t)(M * D) * 4));
    pcu_rownorm a = {};
    a.x = dx, a.xdt = PETREL_DTYPE_F32, a.out = dout, a.odt = PETREL_DTYPE_F32, a.M = M, a.D = D;
    a.w = dw, a.wdt = PETREL_DTYPE_F32, a.b = db, a.bdt = PETREL_DTYPE_F32, a.eps = 1e-5f, a.norm_dtype = -1;
    CK(pcu_rownorm_launch(s, &a));
    auto got = host_copy(dout, (size_t)(M * D));
    std::vector<double> ref((size_t)(M * D));
    for (int64_t r = 0; r < M; r++) {
        double mean = 0, var = 0;
        for (int64_t d = 0; d < D; d++) mean += x[r * D + d];
        mean /= (double)D;
        for (int64_t d = 0; d < D; d++) var += (x[r * D + d] - mean) * (x[r * D + d] - mean);
        double rstd = 1.0 / sqrt(var / (double)D + 1e-5);
        for (int64_t d = 0; d < D; d++) ref[r * D + d] = (x[r * D + d] - mean) * rstd * w[d] + b[d];
    }
    check("layer_norm", got, ref, 1e-5);
    CK(cudaFree(dx));
    CK(cudaFree(dw));
    CK(cudaFree(db));
    CK(cudaFree(dout));
}

/* ---- rope ------------------------------------------------------------------------------- */

/* petrel.rope on x (1, H, 1, 64) bf16 with cos, sin (1, 1, 1, 64) bf16
 * broadcast over the heads. */
static void case_rope(cudaStream_t s, int64_t H) {
    const int64_t D = 64;
    printf("rope bf16, x (1, %lld, 1, %lld)\n", (long long)H, (long long)D);
    auto x = bf_random((size_t)(H * D), 2.0f), c = bf_random((size_t)D, 1.0f), sn = bf_random((size_t)D, 1.0f);
    uint16_t *dx = dev_copy(x), *dc = dev_copy(c), *ds = dev_copy(sn), *dout;
    CK(cudaMalloc(&dout, (size_t)(H * D) * 2));
    pcu_rope a = {};
    a.x = dx, a.cos = dc, a.sin = ds, a.out = dout, a.rank = 4, a.R = D;
    a.xdt = a.cdt = a.sdt = a.odt = PETREL_DTYPE_BF16;
    int64_t shape[4] = {1, H, 1, D}, xs[4] = {H * D, D, D, 1}, cs[4] = {0, 0, 0, 1};
    for (int i = 0; i < 4; i++) a.shape[i] = shape[i], a.xs[i] = xs[i], a.cs[i] = a.ss[i] = cs[i];
    CK(pcu_rope_launch(s, &a));
    auto got = host_copy(dout, (size_t)(H * D));
    std::vector<double> ref((size_t)(H * D));
    std::vector<float> g((size_t)(H * D));
    for (int64_t h = 0; h < H; h++)
        for (int64_t d = 0; d < D; d++) {
            double xv = bf2f(x[h * D + d]);
            double rh = d < D / 2 ? -bf2f(x[h * D + d + D / 2]) : bf2f(x[h * D + d - D / 2]);
            ref[h * D + d] = bfr(bfr(xv * bf2f(c[d])) + bfr(rh * bf2f(sn[d])));
            g[h * D + d] = bf2f(got[h * D + d]);
        }
    check("rope", g, ref, 1e-2);
    bench("rope", s, [&] { return pcu_rope_launch(s, &a); });
    CK(cudaFree(dx));
    CK(cudaFree(dc));
    CK(cudaFree(ds));
    CK(cudaFree(dout));
}

/* ---- attention ------------------------------------------------------------------------ */

/* Host attention of q (Hq, L, E) over k, v (Hkv, S, E) (GQA), query row i
 * seeing keys lo <= j < nvalid (and j <= i + off when causal). */
static std::vector<double> attn_ref(const std::vector<uint16_t> &q, const std::vector<uint16_t> &k,
                                    const std::vector<uint16_t> &v, int64_t Hq, int64_t Hkv, int64_t L, int64_t S,
                                    int64_t E, int64_t nvalid, bool causal, double scale, int64_t lo = 0) {
    std::vector<double> out((size_t)(Hq * L * E)), sc((size_t)S);
    for (int64_t h = 0; h < Hq; h++)
        for (int64_t i = 0; i < L; i++) {
            int64_t hk = h / (Hq / Hkv), n = causal ? (i + 1 < nvalid ? i + 1 : nvalid) : nvalid;
            double mx = -INFINITY, den = 0;
            for (int64_t j = lo; j < n; j++) {
                double d = 0;
                for (int64_t e = 0; e < E; e++)
                    d += (double)bf2f(q[(h * L + i) * E + e]) * bf2f(k[(hk * S + j) * E + e]);
                sc[j] = d * scale, mx = fmax(mx, sc[j]);
            }
            for (int64_t j = lo; j < n; j++) sc[j] = exp(sc[j] - mx), den += sc[j];
            for (int64_t e = 0; e < E; e++) {
                double acc = 0;
                for (int64_t j = lo; j < n; j++) acc += sc[j] * bf2f(v[(hk * S + j) * E + e]);
                out[(h * L + i) * E + e] = n > lo ? acc / den : 0.0;
            }
        }
    return out;
}

/* The attention block of petrel.sdpa_cache as fused.c builds it: q (1, Hq,
 * L, E), caches (1, Hkv, S, E), GQA, an optional bool mask (1, 1, L, S). */
static pcu_attn attn_args(const void *q, const void *kc, const void *vc, void *out, const void *mask, int64_t Hq,
                          int64_t Hkv, int64_t L, int64_t S, int64_t E, bool causal) {
    pcu_attn a = {};
    a.dtype = PETREL_DTYPE_BF16, a.q = q, a.k = kc, a.v = vc, a.out = out, a.nb = 2;
    a.bshape[0] = 1, a.bshape[1] = Hq;
    a.qb[0] = Hq * L * E, a.qb[1] = L * E;
    a.kb[0] = a.vb[0] = Hkv * S * E, a.kb[1] = a.vb[1] = S * E;
    a.kdiv = a.vdiv = a.group = Hq / Hkv;
    a.L = L, a.S = S, a.E = a.Ev = E;
    a.q_sl = E, a.q_se = 1, a.k_ss = a.v_ss = E, a.k_se = a.v_se = 1;
    if (mask) a.mask = mask, a.mask_dtype = PETREL_DTYPE_BOOL, a.m_sl = S, a.m_ss = 1; /* mb: 0, broadcast */
    a.causal = causal;
    a.scale = (float)(1.0 / sqrt((double)E));
    return a;
}

/* The cache write of a decode step in a: position pos (1), new rows kn, vn
 * (1, Hkv, 1, E). */
static void decode_write(pcu_attn *a, const int64_t *pos, const void *kn, const void *vn, int64_t Hkv, int64_t E) {
    a->pos = pos, a->pos_dt = PETREL_DTYPE_I64, a->kn = kn, a->vn = vn;
    a->kn_dt = a->vn_dt = PETREL_DTYPE_BF16, a->kn_se = a->vn_se = 1;
    a->knb[0] = a->vnb[0] = Hkv * E, a->knb[1] = a->vnb[1] = E;
}

/* The decode cases' caches (Hkv, S, E): rows pos.. hold large garbage and
 * rows below lo NaN (a sliding window), both of which the mask must hide.
 * Returns the bool mask (S): true for lo <= j <= pos. */
static std::vector<uint8_t> decode_garbage(std::vector<uint16_t> &kc, std::vector<uint16_t> &vc, int64_t Hkv, int64_t S,
                                           int64_t E, int64_t pos, int64_t lo = 0) {
    for (int64_t h = 0; h < Hkv; h++)
        for (int64_t j = 0; j < S; j++)
            for (int64_t e = 0; e < E; e++) {
                if (j >= pos) kc[(h * S + j) * E + e] = f2bf(300.0f), vc[(h * S + j) * E + e] = f2bf(-1000.0f);
                if (j < lo) kc[(h * S + j) * E + e] = vc[(h * S + j) * E + e] = 0x7fc0; /* NaN */
            }
    std::vector<uint8_t> mask((size_t)S);
    for (int64_t j = 0; j < S; j++) mask[j] = j >= lo && j <= pos;
    return mask;
}

/* petrel.sdpa_cache's decode step: q (1, 32, 1, 64), new k, v (1, 8, 1,
 * 64), caches (1, 8, 2048, 64), pos = nvalid - 1, bool mask (1, 1, 1,
 * 2048) true for lo <= j <= pos.  Cache rows past pos hold large garbage,
 * rows below lo NaN, that the mask must hide. */
static void case_sdpa_decode(cudaStream_t s, int sm_count, int64_t nvalid, int64_t lo = 0, int64_t below = 0) {
    const int64_t Hq = 32, Hkv = 8, S = 2048, E = 64, pos = nvalid - 1;
    printf("sdpa_cache decode bf16, cache S = %lld, %lld valid positions", (long long)S, (long long)nvalid);
    if (lo) printf(" from %lld on", (long long)lo);
    if (below) printf(", hint: positions below %lld%s", (long long)below, pos >= below ? " (wrong)" : "");
    printf("\n");
    auto q = bf_random((size_t)(Hq * E), 2.0f), kn = bf_random((size_t)(Hkv * E), 2.0f),
         vn = bf_random((size_t)(Hkv * E), 1.0f);
    auto kc = bf_random((size_t)(Hkv * S * E), 2.0f), vc = bf_random((size_t)(Hkv * S * E), 1.0f);
    auto mask = decode_garbage(kc, vc, Hkv, S, E, pos, lo);
    std::vector<int64_t> posv(1, pos);
    uint16_t *dq = dev_copy(q), *dkn = dev_copy(kn), *dvn = dev_copy(vn), *dkc = dev_copy(kc), *dvc = dev_copy(vc);
    uint8_t *dmask = dev_copy(mask);
    int64_t *dpos = dev_copy(posv);
    uint16_t *dout;
    CK(cudaMalloc(&dout, (size_t)(Hq * E) * 2));

    auto kexp = kc, vexp = vc; /* the caches after the write */
    for (int64_t h = 0; h < Hkv; h++)
        for (int64_t e = 0; e < E; e++)
            kexp[(h * S + pos) * E + e] = kn[h * E + e], vexp[(h * S + pos) * E + e] = vn[h * E + e];
    auto ref = attn_ref(q, kexp, vexp, Hq, Hkv, 1, S, E, nvalid, false, 1.0 / sqrt((double)E), lo);

    pcu_attn a = attn_args(dq, dkc, dvc, dout, dmask, Hq, Hkv, 1, S, E, false);
    decode_write(&a, dpos, dkn, dvn, Hkv, E);
    a.keys_below = below;
    pcu_attn split = a; /* the same with the separate cache-write kernel (the split kernel) */
    split.pos = NULL;
    void *split_scratch = NULL;
    if (size_t need = pcu_attn_scratch(&split, sm_count)) CK(cudaMalloc(&split_scratch, need));
    pcu_cache_write w = {};
    w.kc = dkc, w.vc = dvc, w.kcdt = w.vcdt = w.kdt = w.vdt = PETREL_DTYPE_BF16;
    int64_t cst[4] = {Hkv * S * E, S * E, E, 1}, nst[4] = {Hkv * E, E, E, 1};
    for (int i = 0; i < 4; i++) w.kcs[i] = w.vcs[i] = cst[i], w.ks[i] = w.vs[i] = nst[i];
    w.k = dkn, w.v = dvn, w.pos = dpos, w.pos_dt = PETREL_DTYPE_I64, w.pos_s = 1;
    w.B = 1, w.H = Hkv, w.L = 1, w.S = S, w.E = E, w.Ev = E;
    if (!pcu_attn_fits(&a, sm_count) || pcu_attn_scratch(&a, sm_count) != 0) {
        printf("  FAIL: the decode attention does not fit or wants scratch\n");
        g_fail = 1;
        return;
    }
    bool fused = pcu_attn_writes_cache(&a, sm_count);
    printf("  attention launch writes the cache: %s\n", fused ? "yes" : "NO (two launches)");
    if (!fused) g_fail = 1;

    auto one_launch = [&] { return pcu_attn_launch(s, &a, sm_count, NULL); };
    auto two_launches = [&] {
        cudaError_t e = pcu_cache_write_launch(s, &w);
        return e != cudaSuccess ? e : pcu_attn_launch(s, &split, sm_count, split_scratch);
    };
    for (int variant = 0; variant < 2; variant++) {
        CK(cudaMemcpy(dkc, kc.data(), kc.size() * 2, cudaMemcpyHostToDevice)); /* row pos: garbage again */
        CK(cudaMemcpy(dvc, vc.data(), vc.size() * 2, cudaMemcpyHostToDevice));
        CK(cudaMemset(dout, 0xff, (size_t)(Hq * E) * 2));
        CK(cudaDeviceSynchronize()); /* the memset is not ordered with the stream */
        CK(variant == 0 ? one_launch() : two_launches());
        auto got = host_copy(dout, (size_t)(Hq * E));
        auto kc2 = host_copy(dkc, kc.size()), vc2 = host_copy(dvc, vc.size());
        bool row_ok = kc2 == kexp && vc2 == vexp; /* row pos written, nothing else */
        printf("  check %-44s %s\n", variant == 0 ? "cache write (fused)" : "cache write (kernel)",
               row_ok ? "ok" : "FAIL");
        if (!row_ok) g_fail = 1;
        std::vector<float> g(got.size());
        for (size_t i = 0; i < got.size(); i++) g[i] = bf2f(got[i]);
        check(variant == 0 ? "attention (write fused)" : "attention (write kernel + attention)", g, ref, 1e-2);
    }
    bench("attention, write fused (1 launch)", s, one_launch);
#ifdef PCU_ATTN_TRACE
    pcu_attn_trace_dump(64);
#endif
    { /* the same over copies of the caches that the L2 cannot hold, as in a decode step, where the weights
       * streamed since a layer's previous step have evicted its cache */
        const int nc = (int)((96ll << 20) / (int64_t)(kc.size() * 4)) + 1;
        std::vector<uint16_t *> ck((size_t)nc), cv((size_t)nc);
        std::vector<pcu_attn> ac((size_t)nc, a);
        for (int c = 0; c < nc; c++) ck[c] = dev_copy(kc), cv[c] = dev_copy(vc), ac[c].k = ck[c], ac[c].v = cv[c];
        double us = graph_us(s, REPS, [&](int i) { return pcu_attn_launch(s, &ac[(size_t)i % nc], sm_count, NULL); });
        printf("  time  %-44s %7.2f us/launch in a graph (%d cache copies)\n", "attention, write fused, caches cold", us,
               nc);
        for (int c = 0; c < nc; c++) {
            CK(cudaFree(ck[c]));
            CK(cudaFree(cv[c]));
        }
    }
    bench("cache write + attention (2 launches)", s, two_launches);
    if (split_scratch) CK(cudaFree(split_scratch));
    CK(cudaFree(dq));
    CK(cudaFree(dkn));
    CK(cudaFree(dvn));
    CK(cudaFree(dkc));
    CK(cudaFree(dvc));
    CK(cudaFree(dmask));
    CK(cudaFree(dpos));
    CK(cudaFree(dout));
}

/* x (rows, E) normalized as petrel.rms_norm (w or 1 + w; n rounded to bf16
 * when nround), then rotated on all E channels by cos, sin (E) as
 * petrel.rope, every step rounded to bf16 where the op rounds. */
static std::vector<uint16_t> norm_rope_ref(const std::vector<uint16_t> &x, const std::vector<uint16_t> &w,
                                           const std::vector<uint16_t> &c, const std::vector<uint16_t> &sn, int64_t rows,
                                           int64_t E, double eps, bool add_one, bool nround) {
    std::vector<uint16_t> out(x.size());
    std::vector<float> y((size_t)E);
    const int64_t h = E / 2;
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t e = 0; e < E; e++) ss += (double)bf2f(x[r * E + e]) * bf2f(x[r * E + e]);
        double rs = 1.0 / sqrt(ss / (double)E + eps);
        for (int64_t e = 0; e < E; e++) {
            double n = bf2f(x[r * E + e]) * rs;
            if (nround) n = bfr(n);
            y[e] = bfr(n * (add_one ? 1.0 + bf2f(w[e]) : bf2f(w[e])));
        }
        for (int64_t e = 0; e < E; e++) {
            double p = e < h ? -y[e + h] : y[e - h];
            out[r * E + e] = f2bf(bfr(bfr((double)y[e] * bf2f(c[e])) + bfr(p * bf2f(sn[e]))));
        }
    }
    return out;
}

/* petrel.sdpa_cache's decode step with its rope and q/k norm in the
 * launch, by default at Qwen3-0.6B's shape: q (1, 16, 1, 128), new k, v
 * (1, 8, 1, 128), caches (1, 8, 2048, 128), pos = nvalid - 1, the bool
 * mask and the garbage past pos of case_sdpa_decode (and NaN below lo: a
 * sliding window).  Qwen3's norm (w, n rounded to bf16), or Gemma 3's (1 +
 * w, n in float) with add_one.  Head dim 256 (Gemma 3) takes the kernel's
 * two-lanes-per-key form. */
static void case_sdpa_decode_qk(cudaStream_t s, int sm_count, int64_t nvalid, bool add_one, int64_t below = 0,
                                int64_t Hq = 16, int64_t Hkv = 8, int64_t E = 128, int64_t lo = 0) {
    const int64_t S = 2048, pos = nvalid - 1;
    const double eps = 1e-6;
    printf("sdpa_cache decode bf16 with rope and %s q/k norm, %lld / %lld heads, E = %lld, cache S = %lld, %lld valid "
           "positions",
           add_one ? "Gemma 3's" : "Qwen3's", (long long)Hq, (long long)Hkv, (long long)E, (long long)S,
           (long long)nvalid);
    if (lo) printf(" from %lld on", (long long)lo);
    if (below) printf(", hint: positions below %lld", (long long)below);
    printf("\n");
    auto q = bf_random((size_t)(Hq * E), 3.0f), kn = bf_random((size_t)(Hkv * E), 3.0f),
         vn = bf_random((size_t)(Hkv * E), 1.0f);
    auto kc = bf_random((size_t)(Hkv * S * E), 2.0f), vc = bf_random((size_t)(Hkv * S * E), 1.0f);
    auto wq = bf_random((size_t)E, 0.5f), wk = bf_random((size_t)E, 0.5f);
    for (auto *w : {&wq, &wk})
        for (auto &x : *w) x = f2bf(bf2f(x) + (add_one ? 0.0f : 1.0f)); /* weights near 1 (or 1 + w near 1) */
    std::vector<uint16_t> cs((size_t)E), sn((size_t)E);
    for (int64_t e = 0; e < E; e++) { /* a position's angles: cos and sin of (pos * f_e), halves equal */
        double f = pos * pow(10000.0, -(double)(2 * (e % (E / 2))) / (double)E);
        cs[e] = f2bf((float)cos(f)), sn[e] = f2bf((float)sin(f));
    }
    auto mask = decode_garbage(kc, vc, Hkv, S, E, pos, lo);
    std::vector<int64_t> posv(1, pos);

    auto qr = norm_rope_ref(q, wq, cs, sn, Hq, E, eps, add_one, !add_one);
    auto kr = norm_rope_ref(kn, wk, cs, sn, Hkv, E, eps, add_one, !add_one);
    auto kexp = kc, vexp = vc;
    for (int64_t h = 0; h < Hkv; h++)
        for (int64_t e = 0; e < E; e++)
            kexp[(h * S + pos) * E + e] = kr[h * E + e], vexp[(h * S + pos) * E + e] = vn[h * E + e];
    auto ref = attn_ref(qr, kexp, vexp, Hq, Hkv, 1, S, E, nvalid, false, 1.0 / sqrt((double)E), lo);

    uint16_t *dq = dev_copy(q), *dkn = dev_copy(kn), *dvn = dev_copy(vn), *dkc = dev_copy(kc), *dvc = dev_copy(vc);
    uint16_t *dwq = dev_copy(wq), *dwk = dev_copy(wk), *dcs = dev_copy(cs), *dsn = dev_copy(sn);
    uint8_t *dmask = dev_copy(mask);
    int64_t *dpos = dev_copy(posv);
    uint16_t *dout;
    CK(cudaMalloc(&dout, (size_t)(Hq * E) * 2));
    pcu_attn a = attn_args(dq, dkc, dvc, dout, dmask, Hq, Hkv, 1, S, E, false);
    decode_write(&a, dpos, dkn, dvn, Hkv, E);
    a.rcos = dcs, a.rsin = dsn, a.R = E; /* rcb: 0, one row for every head */
    a.qnw = dwq, a.knw = dwk, a.neps = (float)eps, a.nadd_one = add_one, a.nround = !add_one;
    a.keys_below = below;
    if (!pcu_attn_norm_ok(&a, sm_count)) {
        printf("  FAIL: the decode launch does not take the rope and norm\n");
        g_fail = 1;
        return;
    }
    CK(cudaMemset(dout, 0xff, (size_t)(Hq * E) * 2));
    CK(cudaDeviceSynchronize()); /* the memset is not ordered with the stream */
    CK(pcu_attn_launch(s, &a, sm_count, NULL));
    auto got = host_copy(dout, (size_t)(Hq * E));
    auto kc2 = host_copy(dkc, kc.size()), vc2 = host_copy(dvc, vc.size());
    /* the caches: row pos = the normalized, rotated k (a rounding apart at
     * most: float vs double 1/rms), v; every other row untouched */
    bool others = true;
    std::vector<float> krow;
    std::vector<double> kref;
    for (int64_t h = 0; h < Hkv; h++)
        for (int64_t j = 0; j < S; j++)
            for (int64_t e = 0; e < E; e++) {
                size_t i = (size_t)((h * S + j) * E + e);
                if (j == pos) krow.push_back(bf2f(kc2[i])), kref.push_back(bf2f(kexp[i]));
                else others = others && kc2[i] == kc[i];
                others = others && vc2[i] == vexp[i];
            }
    printf("  check %-44s %s\n", "cache rows other than pos, v row", others ? "ok" : "FAIL");
    if (!others) g_fail = 1;
    check("cache k row (normalized, rotated)", krow, kref, 1e-2);
    std::vector<float> g(got.size());
    for (size_t i = 0; i < got.size(); i++) g[i] = bf2f(got[i]);
    check("attention", g, ref, 1e-2);
    bench("attention with rope and q/k norm (1 launch)", s, [&] { return pcu_attn_launch(s, &a, sm_count, NULL); });
#ifdef PCU_ATTN_TRACE
    pcu_attn_trace_dump(64);
#endif
    for (void *p : {(void *)dq, (void *)dkn, (void *)dvn, (void *)dkc, (void *)dvc, (void *)dwq, (void *)dwk,
                    (void *)dcs, (void *)dsn, (void *)dmask, (void *)dpos, (void *)dout})
        CK(cudaFree(p));
}

/* Prefill: q (1, Hq, L, E) over k, v (1, Hkv, S, E) in bf16 or f16 (the
 * data drawn as bf16 values, which f16 holds exactly but for tiny ones).
 * mode PF_CAUSAL: the causal flag (top-left: row i sees keys j <= i), no
 * mask; PF_MASK: a bool mask (1, 1, L, S) with row i seeing keys j <= i
 * (petrel.sdpa_cache's prefill into a static cache), the K and V rows no
 * row sees holding NaN (an unwritten cache: they must add nothing);
 * PF_FULL: neither (cross attention: every row sees every key); PF_FMASK:
 * PF_MASK's visibility as a bf16 additive mask (0, or bf16's lowest value
 * as Hugging Face writes it), the unseen rows holding large finite values
 * (300 in K, -1000 in V) that must weigh nothing.  L >= 16
 * with E of 64, 128 or 256 takes the tensor-core kernel, L < 16 the general
 * one (split keys + combine when its blocks are few). */
enum { PF_CAUSAL, PF_MASK, PF_FULL, PF_FMASK };
static void case_sdpa_prefill(cudaStream_t s, int sm_count, int64_t L, int64_t S, int64_t E = 64, int64_t Hq = 32,
                              int64_t Hkv = 8, int mode = PF_CAUSAL, bool f16 = false) {
    static const char *mn[] = {"causal", "bool mask, NaN in the rows no row sees", "no mask",
                               "bf16 mask (0 / lowest), large values in the rows no row sees"};
    printf("sdpa prefill %s, L = %lld, S = %lld, E = %lld, %lld / %lld heads, %s\n", f16 ? "f16" : "bf16",
           (long long)L, (long long)S, (long long)E, (long long)Hq, (long long)Hkv, mn[mode]);
    auto q = bf_random((size_t)(Hq * L * E), 2.0f), k = bf_random((size_t)(Hkv * S * E), 2.0f),
         v = bf_random((size_t)(Hkv * S * E), 1.0f);
    const int64_t seen = mode == PF_FULL ? S : std::min(L, S); /* keys some row sees */
    auto dev = [&](const std::vector<uint16_t> &h, uint16_t garbage) {
        std::vector<uint16_t> d(h);
        for (size_t x = 0; x < d.size(); x++) {
            if (garbage && (int64_t)(x / E) % S >= seen) d[x] = garbage;
            if (f16) d[x] = f2h(bf2f(d[x]));                       /* NaN stays NaN */
        }
        return dev_copy(d);
    };
    const bool fm = mode == PF_FMASK;
    uint16_t *dq = dev(q, 0), *dk = dev(k, mode == PF_MASK ? 0x7fc0 : fm ? f2bf(300.0f) : 0), /* 0x7fc0: NaN */
        *dv = dev(v, mode == PF_MASK ? 0x7fc0 : fm ? f2bf(-1000.0f) : 0), *dout;
    void *dm = NULL;
    if (mode == PF_MASK || fm) {
        std::vector<uint8_t> mb((size_t)(L * S)); /* bool */
        std::vector<uint16_t> mf((size_t)(L * S)); /* bf16 terms */
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < S; j++) {
                mb[(size_t)(i * S + j)] = j <= i;
                mf[(size_t)(i * S + j)] = j <= i ? 0 : 0xff7f;
            }
        dm = fm ? (void *)dev_copy(mf) : (void *)dev_copy(mb);
    }
    CK(cudaMalloc(&dout, (size_t)(Hq * L * E) * 2));
    pcu_attn a = attn_args(dq, dk, dv, dout, dm, Hq, Hkv, L, S, E, mode == PF_CAUSAL);
    if (f16) a.dtype = PETREL_DTYPE_F16;
    if (fm) a.mask_dtype = PETREL_DTYPE_BF16;
    size_t need = pcu_attn_scratch(&a, sm_count);
    void *scratch = NULL;
    if (need) CK(cudaMalloc(&scratch, need));
    CK(pcu_attn_launch(s, &a, sm_count, scratch));
    auto got = host_copy(dout, (size_t)(Hq * L * E));
    auto ref = attn_ref(q, k, v, Hq, Hkv, L, S, E, S, mode != PF_FULL, 1.0 / sqrt((double)E));
    std::vector<float> g(got.size());
    for (size_t i = 0; i < got.size(); i++) g[i] = f16 ? h2f(got[i]) : bf2f(got[i]);
    check("attention", g, ref, f16 ? 1e-3 : 1e-2);
    double us = bench("attention", s, [&] { return pcu_attn_launch(s, &a, sm_count, scratch); });
    /* multiply-adds of q k^T and p v over the keys each row sees */
    double macs = 0;
    for (int64_t i = 0; i < L; i++)
        macs += 2.0 * (double)(mode == PF_FULL ? S : i + 1 < S ? i + 1 : S) * (double)E * (double)Hq;
    printf("  rate  %-44s %7.2f TFLOP/s (2 flops per multiply-add)\n", "attention", 2.0 * macs / (us * 1e6));
    if (scratch) CK(cudaFree(scratch));
    if (dm) CK(cudaFree(dm));
    CK(cudaFree(dq));
    CK(cudaFree(dk));
    CK(cudaFree(dv));
    CK(cudaFree(dout));
}

/* ---- top-k of a row of logits ------------------------------------------------------------ */

/* pcu_topk_launch over a bf16 row of n logits with many ties (values on a
 * coarse grid) and some NaN, against a full sort on the host of x / t
 * (larger first, lower index on ties): the k keys exactly. */
static void case_topk(cudaStream_t s, int64_t n, int32_t k) {
    const float t = 0.8f;
    printf("top-k bf16, n = %lld, k = %d\n", (long long)n, (int)k);
    std::vector<uint16_t> x((size_t)n);
    uint64_t st = 0x5eed + (uint64_t)n;
    for (auto &v : x) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(st >> 33);
        v = r % 97 == 0 ? (uint16_t)0x7fc0 /* NaN */ : f2bf((float)(r % 4096) * 0.01f - 20.0f);
    }
    std::vector<std::pair<float, int64_t>> ref;
    for (int64_t i = 0; i < n; i++) {
        float v = bf2f(x[(size_t)i]) / t;
        if (!std::isnan(v)) ref.push_back({v, i});
    }
    std::sort(ref.begin(), ref.end(), [](const std::pair<float, int64_t> &a, const std::pair<float, int64_t> &b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    uint16_t *dx = dev_copy(x);
    uint64_t *work, *out;
    CK(cudaMalloc(&work, PCU_TOPK_MERGE * 8));
    CK(cudaMalloc(&out, (size_t)k * 8));
    if (!pcu_topk_fits(n, k)) {
        printf("  FAIL: the row does not fit\n");
        g_fail = 1;
        return;
    }
    CK(pcu_topk_launch(s, PETREL_DTYPE_BF16, dx, 1, n, k, t, work, out));
    auto got = host_copy(out, (size_t)k);
    bool ok = true;
    for (int32_t j = 0; j < k && ok; j++) {
        uint32_t b = (uint32_t)(got[j] >> 32);
        b = (b & 0x80000000u) ? b & 0x7fffffffu : ~b;
        float v;
        memcpy(&v, &b, 4);
        int64_t id = 0xffffffffu - (uint32_t)got[j];
        ok = (size_t)j < ref.size() && v == ref[j].first && id == ref[j].second;
        if (!ok) printf("  candidate %d: %lld (%g), want %lld (%g)\n", (int)j, (long long)id, v, (long long)ref[j].second,
                        ref[j].first);
    }
    printf("  check %-44s %s\n", "top-k keys", ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
    bench("top-k (2 launches)", s, [&] { return pcu_topk_launch(s, PETREL_DTYPE_BF16, dx, 1, n, k, t, work, out); });
    CK(cudaFree(dx));
    CK(cudaFree(work));
    CK(cudaFree(out));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows through a pipe */
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("%s, %d SMs; %d launches per timing\n", prop.name, prop.multiProcessorCount, REPS);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    case_rms_norm(s, 2048);
    case_layer_norm_long(s, 3, 8192 + 77);
    case_rope(s, 32);
    case_rope(s, 8);
    const int64_t valid[] = {128, 384, 1024, 2048};
    for (int64_t n : valid) case_sdpa_decode(s, prop.multiProcessorCount, n);
    case_sdpa_decode(s, prop.multiProcessorCount, 1024, 500); /* a window: NaN rows below it */
    /* the executor's range of positions (one query row per warp below 512) */
    case_sdpa_decode(s, prop.multiProcessorCount, 128, 0, 512);
    case_sdpa_decode(s, prop.multiProcessorCount, 384, 0, 512);
    case_sdpa_decode(s, prop.multiProcessorCount, 384, 100, 512); /* a window inside the range */
    case_sdpa_decode(s, prop.multiProcessorCount, 128, 0, 64);    /* a wrong bound: keys past it still count */
    case_sdpa_decode_qk(s, prop.multiProcessorCount, 128, false, 512); /* two rows: one per warp either way */
    case_sdpa_decode_qk(s, prop.multiProcessorCount, 128, false);
    case_sdpa_decode_qk(s, prop.multiProcessorCount, 1024, false);
    case_sdpa_decode_qk(s, prop.multiProcessorCount, 384, true);
    /* head dim 256: Gemma-3-1B's 4 / 1 heads (four rows per warp), in and past a 512-key window; Gemma-3-4B's 8 / 4
     * (one row per warp) */
    case_sdpa_decode_qk(s, prop.multiProcessorCount, 128, true, 512, 4, 1, 256);
    case_sdpa_decode_qk(s, prop.multiProcessorCount, 1500, true, 0, 4, 1, 256, 1500 - 512);
    case_sdpa_decode_qk(s, prop.multiProcessorCount, 384, true, 512, 8, 4, 256);
    case_sdpa_decode_qk(s, prop.multiProcessorCount, 2048, true, 0, 8, 4, 256);
    const int sm = prop.multiProcessorCount;
    case_sdpa_prefill(s, sm, 128, 128);
    case_sdpa_prefill(s, sm, 512, 512);  /* a prefill chunk of Llama-3.2-1B's shape */
    case_sdpa_prefill(s, sm, 8, 1024);   /* the general kernel, few blocks: split keys + combine */
    case_sdpa_prefill(s, sm, 12, 40);    /* the general kernel, unsplit */
    case_sdpa_prefill(s, sm, 16, 1024);  /* the fewest rows the tensor cores take */
    case_sdpa_prefill(s, sm, 2048, 2048); /* a 2048-token chunk */
    case_sdpa_prefill(s, sm, 128, 2048, 64, 32, 8, PF_MASK);   /* into a static cache */
    case_sdpa_prefill(s, sm, 100, 2048, 64, 32, 8, PF_MASK);   /* rows past L in the last block */
    case_sdpa_prefill(s, sm, 512, 2048, 128, 16, 8, PF_MASK);  /* Qwen3-0.6B's heads */
    case_sdpa_prefill(s, sm, 2048, 2048, 128, 16, 8, PF_CAUSAL);
    case_sdpa_prefill(s, sm, 100, 1500, 64, 20, 20, PF_FULL);  /* Whisper's cross attention (S not a tile multiple) */
    case_sdpa_prefill(s, sm, 128, 128, 64, 32, 8, PF_CAUSAL, true);
    case_sdpa_prefill(s, sm, 300, 2048, 128, 16, 8, PF_MASK, true);
    case_sdpa_prefill(s, sm, 100, 1500, 64, 20, 20, PF_FULL, true);
    case_sdpa_prefill(s, sm, 128, 2048, 256, 4, 1, PF_MASK);         /* Gemma-3-1B's heads: q rows staged */
    case_sdpa_prefill(s, sm, 2048, 2048, 256, 4, 1, PF_CAUSAL);
    case_sdpa_prefill(s, sm, 200, 2048, 256, 8, 4, PF_MASK, true);   /* Gemma-3-4B's */
    case_sdpa_prefill(s, sm, 128, 2048, 64, 32, 8, PF_FMASK);        /* Hugging Face's additive mask */
    case_sdpa_prefill(s, sm, 100, 2048, 256, 4, 1, PF_FMASK);
    case_topk(s, 128256, 41); /* Llama 3's vocabulary, the default top_k + 1 */
    case_topk(s, 262144, 64); /* Gemma 3's, the most candidates */
    case_topk(s, 1000, 7);
    CK(cudaStreamDestroy(s));
    printf(g_fail ? "SOME CHECKS FAILED\n" : "all checks passed\n");
    return g_fail;
}
