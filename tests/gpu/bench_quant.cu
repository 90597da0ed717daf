/*
** bench_quant.cu -- checks and micro-benchmark of the quantized-weight
** CUDA kernels (src/backends/cuda/ops/quant_k.cu): the decode GEMV of
** petrel.qlinear, the panel dequantization of its prefill path and the
** quantized embedding.
**
** Checks, against a host reference that dequantizes W exactly as ops.def
** and the CPU kernel do (core/quant_fmt.h) and sums in double:
**   - every format (int8, int8s, int4, int4s, int2, int2s, nvfp4) through
**     the GEMV in each mode (n with three weights, gated, add), with 1
**     and 3 rows of x of f32 (relative L2 <= 1e-5: W is exact, sums are
**     fp32), bf16 (1e-2) and f16 (1e-3), the dtypes' tolerances, once
**     with non-constant weights, and with the RMSNorm prologue (x * w,
**     x * (1 + w));
**   - int4 with bf16 x on odd shapes: rows that are no multiple of a
**     block's, stacked weights of such sizes, short and long rows;
**   - int8 through the ring kernel (one row of x, K a multiple of 512, f16
**     and bf16), the same kinds of cases;
**   - int2 the same way (K a multiple of 2048);
**   - the ring kernel's general form (f16/bf16 x, K a multiple of 32 but
**     not of the pass: a partial last pass) for int4, int8 and int2;
**   - int4 through the ring kernel (one row of x, K a multiple of 1024),
**     f32, bf16 and f16: stacked, gated + norm, residual, computed
**     weights, row counts that leave a partial item at the end (with f16
**     and bf16 that kernel takes x as 16-bit integers, so a few outputs
**     differ from the reference by one rounding of the dtype);
**   - the panel dequantization and the embedding: bit-equal to the host's
**     W rounded to the output dtype.
** Benchmark: int4, int8 and int2 (groups of 32) GEMVs of Llama-3.2-1B's decode
** shapes, bf16, one row of x -- q/k/v (3072 x 2048 as three weights, one
** launch), o (2048 x 2048, + residual), gate and up (2 x 8192 x 2048),
** down (2048 x 8192, + residual) and the LM head (128256 x 2048) -- each
** checked, then timed over REPS launches captured in one CUDA graph (as
** the decode step runs, programmatic dependent launch included) that
** rotate through copies of the weights filling > 400 MB, so that the 50
** MB L2 cannot hold them; printed as us per launch and GB/s of packed
** bytes (codes, scales and zero points).  Then int4 and int8 at
** Qwen3-0.6B's shapes (q/k/v 2048 + 2 x 1024 rows of K = 1024, o 1024 x
** 2048, gate and up 2 x 3072 x 1024, down 1024 x 3072, LM head 151936 x
** 1024), timed the same way; the prefill's panel dequantization of
** Llama-3.2-1B's gate weight (8192 x 2048), int4, int8 and int2; and int4,
** int8 and int2 at Gemma-3-1B's shapes (q/k/v 1024 + 2 x 256 rows of K =
** 1152 with x (1 + w)'s norm, o 1152 x 1024, gate and up 2 x 6912 x 1152,
** down 1152 x 6912, LM head 262144 x 1152), K no multiple of a pass but
** o's (-DQ4_GEN_OFF: those on the general kernel, as before the ring's
** general form).
**
** Standalone: it compiles the kernel file directly, no petrel library.
** From the repository root:
**   nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_quant.cu \
**     src/backends/cuda/ops/quant_k.cu -o /tmp/bench_quant && /tmp/bench_quant
** Exit status 1 when a check fails.
*/
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "bench_util.h"

#include "backends/cuda/ops/quant_k.h"
#include "core/quant_fmt.h"
#include "petrel.h"

#ifndef REPS
#define REPS 200
#endif
#define ROTATE_BYTES ((size_t)400 << 20)

/* The compute dtype of a case: x, outputs and scales. */
enum { DT_F32, DT_BF16, DT_F16 };
static const char *dt_name(int dt) { return dt == DT_BF16 ? "bf16" : dt == DT_F16 ? "f16" : "f32"; }
static int32_t dt_petrel(int dt) { return dt == DT_BF16 ? PETREL_DTYPE_BF16 : dt == DT_F16 ? PETREL_DTYPE_F16 : PETREL_DTYPE_F32; }
static uint16_t f2h(float f, int dt) { /* to a 16-bit dtype, rounded to nearest even */
    if (dt == DT_BF16) return f2bf(f);
    __half h = __float2half_rn(f);
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float h2f(uint16_t u, int dt) {
    if (dt == DT_BF16) return bf2f(u);
    __half h;
    memcpy(&h, &u, 2);
    return __half2float(h);
}
static double dtr(double v, int dt) { return dt == DT_F32 ? (double)(float)v : h2f(f2h((float)v, dt), dt); } /* v rounded to dt */

static float frand(void) { return (float)(urand() & 0xffffff) / 8388608.0f - 1.0f; } /* [-1, 1) */

/* ---- weights ------------------------------------------------------------------------ */

/* One quantized weight (N, K) on the host: random codes, scales of the
 * compute dtype (nvfp4: E4M3 bytes of moderate exponents) and zero
 * points in [qmin, qmax]. */
struct HostW {
    int fmt;
    int64_t N, K, G;
    int dt; /* the compute dtype, the scales' (nvfp4: E4M3 bytes) */
    std::vector<uint8_t> codes, scales;
    std::vector<int8_t> zeros;
    float t = 1.0f;

    int64_t ng() const { return K / G; }
    size_t bytes() const { return codes.size() + scales.size() + zeros.size(); }
    float scale(int64_t n, int64_t g) const {
        if (fmt == PT_QFMT_NVFP4) return pt_e4m3_to_float(scales[n * ng() + g]);
        if (dt != DT_F32) {
            uint16_t h;
            memcpy(&h, &scales[(n * ng() + g) * 2], 2);
            return h2f(h, dt);
        }
        float f;
        memcpy(&f, &scales[(n * ng() + g) * 4], 4);
        return f;
    }
    /* W[n, k] as ops.def defines it (the CPU reference's q_row) */
    float w(int64_t n, int64_t k) const {
        int bits = pt_qfmt_bits((pt_qfmt)fmt);
        unsigned u = pt_q_code(&codes[n * (K * bits / 8)], k, bits);
        float s = scale(n, k / G);
        if (fmt == PT_QFMT_NVFP4) return pt_e2m1_to_float(u) * s * t;
        int zp = zeros.empty() ? 0 : zeros[n * ng() + k / G];
        return (float)((int)u + pt_qfmt_qmin((pt_qfmt)fmt) - zp) * s;
    }
};

static HostW make_weight(int fmt, int64_t N, int64_t K, int64_t G, int dt) {
    HostW h;
    h.fmt = fmt, h.N = N, h.K = K, h.G = G, h.dt = dt;
    h.codes.resize((size_t)(N * K * pt_qfmt_bits((pt_qfmt)fmt) / 8));
    for (auto &c : h.codes) c = (uint8_t)urand();
    size_t ns = (size_t)(N * (K / G));
    if (fmt == PT_QFMT_NVFP4) {
        h.scales.resize(ns);
        for (auto &s : h.scales) s = (uint8_t)(((5 + urand() % 5) << 3) | (urand() & 7)); /* 2^-2 .. 2^2 */
        h.t = 0.01f;
    } else {
        h.scales.resize(ns * (dt != DT_F32 ? 2 : 4));
        for (size_t i = 0; i < ns; i++) {
            float s = (0.5f + 0.5f * fabsf(frand())) / (float)(1 << pt_qfmt_bits((pt_qfmt)fmt)) * 0.1f;
            if (dt != DT_F32) {
                uint16_t b = f2h(s, dt);
                memcpy(&h.scales[i * 2], &b, 2);
            } else {
                memcpy(&h.scales[i * 4], &s, 4);
            }
        }
    }
    if (pt_qfmt_asym((pt_qfmt)fmt)) {
        h.zeros.resize(ns);
        int lo = pt_qfmt_qmin((pt_qfmt)fmt), span = pt_qfmt_qmax((pt_qfmt)fmt) - lo + 1;
        for (auto &z : h.zeros) z = (int8_t)(lo + (int)(urand() % (uint32_t)span));
    }
    return h;
}

/* Device copies: `copies` consecutive images of codes, scales, zeros and t. */
struct DevW {
    uint8_t *base = nullptr;
    size_t stride = 0; /* bytes per copy */
    size_t oc = 0, os = 0, oz = 0, ot = 0;
};

static size_t up16(size_t n) { return (n + 255) & ~(size_t)255; }

static DevW upload(const HostW &h, int copies) {
    DevW d;
    d.oc = 0, d.os = up16(h.codes.size()), d.oz = d.os + up16(h.scales.size()), d.ot = d.oz + up16(h.zeros.size());
    d.stride = d.ot + 256;
    CK(cudaMalloc(&d.base, d.stride * (size_t)copies));
    std::vector<uint8_t> img(d.stride, 0);
    memcpy(&img[d.oc], h.codes.data(), h.codes.size());
    memcpy(&img[d.os], h.scales.data(), h.scales.size());
    if (!h.zeros.empty()) memcpy(&img[d.oz], h.zeros.data(), h.zeros.size());
    memcpy(&img[d.ot], &h.t, 4);
    CK(cudaMemcpy(d.base, img.data(), d.stride, cudaMemcpyHostToDevice));
    for (int c = 1; c < copies; c++)
        CK(cudaMemcpy(d.base + c * d.stride, d.base, d.stride, cudaMemcpyDeviceToDevice));
    return d;
}

static pcu_qweight qweight(const HostW &h, const DevW &d, int copy) {
    uint8_t *b = d.base + (size_t)copy * d.stride;
    pcu_qweight w = {};
    w.codes = b + d.oc, w.code_rs = h.K * pt_qfmt_bits((pt_qfmt)h.fmt) / 8;
    w.scales = b + d.os;
    w.sdt = h.fmt == PT_QFMT_NVFP4 ? PETREL_DTYPE_U8 : dt_petrel(h.dt);
    w.s_rs = h.ng(), w.s_cs = 1;
    if (!h.zeros.empty()) w.zeros = (const int8_t *)(b + d.oz), w.z_rs = h.ng(), w.z_cs = 1;
    if (h.fmt == PT_QFMT_NVFP4) w.t = (const float *)(b + d.ot);
    w.N = h.N;
    return w;
}

/* ---- checking and timing ---------------------------------------------------------- */

static void check(const char *what, const std::vector<double> &got, const std::vector<double> &ref, double tol) {
    double num = 0, den = 0, maxd = 0, maxr = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double d = got[i] - ref[i];
        num += d * d, den += ref[i] * ref[i];
        maxd = fmax(maxd, fabs(d)), maxr = fmax(maxr, fabs(ref[i]));
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    bool ok = rel <= tol && std::isfinite(rel);
    printf("  check %-52s rel L2 %.2e  max|err|/max|ref| %.2e  %s\n", what, rel, maxr > 0 ? maxd / maxr : maxd,
           ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
}

/* ---- the GEMV ------------------------------------------------------------------------- */

static const char *fmt_name(int fmt) { return pt_qfmt_name((pt_qfmt)fmt); }
static const char *mode_name(int mode) {
    return mode == PCU_GEMV_GATED ? "gated" : mode == PCU_GEMV_RESID ? "add" : "n";
}

/* One GEMV case: weights of rows Ns (PLAIN: one output each; GATED: gate
 * and up; RESID: one + residual), x (M, K) of dtype dt, norm 1 or
 * 2: the RMSNorm prologue (x * w, or x * (1 + w)).  Checks it; with bench,
 * also times it over rotating weight copies. */
static void gemv_case(cudaStream_t s, int sm_count, int fmt, int64_t G, int mode, int dt, int M,
                      const std::vector<int64_t> &Ns, int64_t K, bool w_const, bool bench, int norm = 0) {
    int nw = (int)Ns.size();
    size_t es = dt != DT_F32 ? 2 : 4, wbytes = 0;
    std::vector<HostW> hw;
    for (int i = 0; i < nw; i++) hw.push_back(make_weight(fmt, Ns[i], K, G, dt));
    for (auto &h : hw) wbytes += h.bytes();
    int copies = bench ? (int)(ROTATE_BYTES / wbytes) + 2 : 1;
    std::vector<DevW> dw;
    for (auto &h : hw) dw.push_back(upload(h, copies));

    /* x, residual, norm weight: random values of the dtype, as bytes b and their values v */
    auto draw = [&](std::vector<double> &v, std::vector<uint8_t> &b) {
        b.resize(v.size() * es);
        for (size_t i = 0; i < v.size(); i++) {
            float f = frand();
            if (dt != DT_F32) {
                uint16_t h = f2h(f, dt);
                memcpy(&b[i * 2], &h, 2), v[i] = h2f(h, dt);
            } else {
                memcpy(&b[i * 4], &f, 4), v[i] = f;
            }
        }
    };
    std::vector<double> xv((size_t)(M * K)), rv((size_t)(M * Ns[0])), nv((size_t)K);
    std::vector<uint8_t> xb, rb, nb;
    draw(xv, xb);
    draw(rv, rb);
    draw(nv, nb);
    void *dx, *dr, *dn;
    CK(cudaMalloc(&dn, nb.size()));
    CK(cudaMemcpy(dn, nb.data(), nb.size(), cudaMemcpyHostToDevice));
    CK(cudaMalloc(&dx, xb.size()));
    CK(cudaMalloc(&dr, rb.size()));
    CK(cudaMemcpy(dx, xb.data(), xb.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dr, rb.data(), rb.size(), cudaMemcpyHostToDevice));
    int nout = mode == PCU_GEMV_PLAIN ? nw : 1;
    std::vector<void *> dout(nout);
    for (int i = 0; i < nout; i++) CK(cudaMalloc(&dout[i], (size_t)(M * Ns[i]) * es));

    auto args = [&](int copy) {
        pcu_qgemv g = {};
        g.dtype = dt_petrel(dt), g.fmt = fmt, g.G = G;
        g.x = dx, g.ldx = K, g.M = M, g.K = K, g.mode = mode, g.act = PCU_ACT_SILU, g.w_const = w_const;
        g.nw = nw;
        for (int i = 0; i < nw; i++) g.w[i] = qweight(hw[i], dw[i], copy);
        for (int i = 0; i < nout; i++) g.out[i] = dout[i];
        if (mode == PCU_GEMV_RESID) g.res = dr, g.res_dtype = g.dtype, g.res_sm = Ns[0], g.res_sn = 1;
        if (norm) g.norm = 1, g.norm_add_one = norm == 2, g.norm_w = dn, g.norm_eps = 1e-6f;
        return g;
    };
    pcu_qgemv g0 = args(0);
    char what[160];
    snprintf(what, sizeof what, "%s g%lld %s%s %s M=%d K=%lld N=%lld%s%s", fmt_name(fmt), (long long)G,
             mode_name(mode), norm == 2 ? "+norm1" : norm ? "+norm" : "", dt_name(dt), M, (long long)K,
             (long long)Ns[0], nw > 1 ? "..." : "", w_const ? "" : " (computed weights)");
    if (!pcu_qgemv_fits(&g0)) {
        printf("  check %-52s FAIL: the GEMV does not take it\n", what);
        g_fail = 1;
        return;
    }
    for (int i = 0; i < nout; i++) CK(cudaMemset(dout[i], 0xff, (size_t)(M * Ns[i]) * es));
    CK(pcu_qgemv_launch(s, &g0, sm_count));
    CK(cudaStreamSynchronize(s));

    /* reference: products in double from W exactly, then the mode's rounding points */
    auto rnd = [&](double v) { return dtr(v, dt); };
    std::vector<double> xn = xv; /* x as the products see it: norm 1, 2: round(x * w), round(x * w + x) */
    double rstd = 1.0;
    if (norm) {
        double ss = 0;
        for (int64_t k = 0; k < K; k++) ss += xv[k] * xv[k];
        rstd = 1.0 / sqrt((double)(float)(ss / (double)K) + 1e-6);
        for (int64_t k = 0; k < K; k++) xn[k] = rnd(xv[k] * nv[k] + (norm == 2 ? xv[k] : 0.0));
    }
    std::vector<double> got, ref;
    std::vector<std::vector<double>> p(nw);
    for (int i = 0; i < nw; i++) {
        p[i].resize((size_t)(M * Ns[i]));
        for (int64_t n = 0; n < Ns[i]; n++) {
            std::vector<float> wr((size_t)K);
            for (int64_t k = 0; k < K; k++) wr[k] = hw[i].w(n, k);
            for (int m = 0; m < M; m++) {
                double a = 0;
                for (int64_t k = 0; k < K; k++) a += (double)wr[k] * xn[m * K + k];
                p[i][m * Ns[i] + n] = a * rstd;
            }
        }
    }
    for (int i = 0; i < nout; i++) {
        std::vector<uint8_t> ob((size_t)(M * Ns[i]) * es);
        CK(cudaMemcpy(ob.data(), dout[i], ob.size(), cudaMemcpyDeviceToHost));
        for (int64_t j = 0; j < M * Ns[i]; j++) {
            double v;
            if (dt != DT_F32) {
                uint16_t h;
                memcpy(&h, &ob[j * 2], 2);
                v = h2f(h, dt);
            } else {
                float f;
                memcpy(&f, &ob[j * 4], 4);
                v = f;
            }
            got.push_back(v);
            double r = p[i][j];
            if (mode == PCU_GEMV_GATED) {
                double gq = rnd(r);
                r = rnd(rnd(gq / (1.0 + exp(-gq))) * rnd(p[1][j]));
            } else if (mode == PCU_GEMV_RESID) {
                r = rnd(rnd(r) + rv[j]);
            } else {
                r = rnd(r);
            }
            ref.push_back(r);
        }
    }
    check(what, got, ref, dt == DT_BF16 ? 1e-2 : dt == DT_F16 ? 1e-3 : 1e-5);

    if (bench) {
        std::vector<pcu_qgemv> gs;
        for (int c = 0; c < copies; c++) gs.push_back(args(c));
        double us =
            graph_us(s, REPS, [&](int i) { return pcu_qgemv_launch(s, &gs[(size_t)i % gs.size()], sm_count); });
        printf("  time  %-52s %8.2f us  %7.0f GB/s  (%.1f MB packed, %d copies)\n", what, us, wbytes / us * 1e-3,
               wbytes / 1048576.0, copies);
    }
    for (auto &d : dw) CK(cudaFree(d.base));
    for (auto p2 : dout) CK(cudaFree(p2));
    CK(cudaFree(dx));
    CK(cudaFree(dr));
    CK(cudaFree(dn));
}

/* ---- dequantization and embedding --------------------------------------------------------- */

/* Panel rows [n0, n0 + rows) and embedding rows at some indices (one out
 * of range, one negative): bit-equal to the host's W rounded to dt. */
static void dequant_case(cudaStream_t s, int sm, int fmt, int64_t G, int dt) {
    const int64_t N = 37, K = 256, n0 = 5, rows = 29;
    HostW h = make_weight(fmt, N, K, G, dt);
    DevW d = upload(h, 1);
    pcu_qweight w = qweight(h, d, 0);
    size_t es = dt != DT_F32 ? 2 : 4;
    auto as_double = [&](const uint8_t *p) {
        if (dt != DT_F32) {
            uint16_t v;
            memcpy(&v, p, 2);
            return (double)h2f(v, dt);
        }
        float f;
        memcpy(&f, p, 4);
        return (double)f;
    };
    auto rnd = [&](float v) { return dtr(v, dt); };
    void *dp;
    CK(cudaMalloc(&dp, (size_t)(rows * K) * es));
    CK(pcu_qdequant_launch(s, fmt, G, K, &w, n0, rows, dp, dt_petrel(dt), sm));
    std::vector<uint8_t> pb((size_t)(rows * K) * es);
    CK(cudaStreamSynchronize(s)); /* a non-blocking stream: cudaMemcpy does not wait for it */
    CK(cudaMemcpy(pb.data(), dp, pb.size(), cudaMemcpyDeviceToHost));
    bool ok = true;
    for (int64_t r = 0; r < rows && ok; r++)
        for (int64_t k = 0; k < K && ok; k++) ok = as_double(&pb[(r * K + k) * es]) == rnd(h.w(n0 + r, k));
    const std::vector<int64_t> idx = {3, 36, -1, 0, 37, 12};
    int64_t *di;
    void *de;
    CK(cudaMalloc(&di, idx.size() * 8));
    CK(cudaMalloc(&de, idx.size() * (size_t)K * es));
    CK(cudaMemcpy(di, idx.data(), idx.size() * 8, cudaMemcpyHostToDevice));
    CK(pcu_qembedding_launch(s, fmt, G, K, &w, di, PETREL_DTYPE_I64, (int64_t)idx.size(), de, dt_petrel(dt)));
    std::vector<uint8_t> eb(idx.size() * (size_t)K * es);
    CK(cudaStreamSynchronize(s)); /* a non-blocking stream: cudaMemcpy does not wait for it */
    CK(cudaMemcpy(eb.data(), de, eb.size(), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < idx.size() && ok; i++) {
        int64_t n = idx[i] < 0 ? idx[i] + N : idx[i];
        for (int64_t k = 0; k < K && ok; k++)
            ok = as_double(&eb[(i * K + k) * es]) == (n >= N ? 0.0 : rnd(h.w(n, k)));
    }
    printf("  check %-52s %s\n",
           (std::string(fmt_name(fmt)) + " g" + std::to_string(G) + " " + dt_name(dt) +
            ": dequantized panel, embedding rows").c_str(),
           ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
    CK(cudaFree(dp));
    CK(cudaFree(di));
    CK(cudaFree(de));
    CK(cudaFree(d.base));
}

/* The prefill's panel dequantization of an N x K weight alone: us per
 * launch (REPS in a graph, the same weight) and GB/s of panel bytes. */
static void dequant_time(cudaStream_t s, int sm, int fmt, int64_t N, int64_t K, int dt) {
    HostW h = make_weight(fmt, N, K, 32, dt);
    DevW d = upload(h, 1);
    pcu_qweight w = qweight(h, d, 0);
    const size_t bytes = (size_t)(N * K) * (dt != DT_F32 ? 2 : 4);
    void *dp;
    CK(cudaMalloc(&dp, bytes));
    double us =
        graph_us(s, REPS, [&](int) { return pcu_qdequant_launch(s, fmt, 32, K, &w, 0, N, dp, dt_petrel(dt), sm); });
    printf("  time  %-52s %8.2f us %8.0f GB/s written\n",
           (std::string(fmt_name(fmt)) + " g32 " + dt_name(dt) + " panel " + std::to_string(N) + " x " +
            std::to_string(K)).c_str(),
           us, bytes / (us * 1e-6) * 1e-9);
    CK(cudaFree(dp));
    CK(cudaFree(d.base));
}

/* The ring kernel's cases for one code width, dtype dt: asym and sym are
 * the width's two formats, gr the group of the symmetric residual case
 * (int8's passes are 512 codes, so its groups stop at 64 there). */
static void ring_cases(cudaStream_t s, int sm, int asym, int sym, int64_t gr, int dt) {
    gemv_case(s, sm, asym, 32, PCU_GEMV_PLAIN, dt, 1, {1000, 333, 77}, 3072, true, false, 1);
    gemv_case(s, sm, asym, 64, PCU_GEMV_GATED, dt, 1, {5001, 5001}, 1024, true, false, 2);
    gemv_case(s, sm, sym, gr, PCU_GEMV_RESID, dt, 1, {2051}, 2048, true, false);
    gemv_case(s, sm, asym, 32, PCU_GEMV_PLAIN, dt, 1, {50001}, 1024, false, false);
    /* a row set's passes split over 2, 4 and 8 warps (q4gemv_rows; on 132 multiprocessors) */
    gemv_case(s, sm, asym, 32, PCU_GEMV_PLAIN, dt, 1, {1400, 301, 300}, 2048, true, false, 1);
    gemv_case(s, sm, sym, 32, PCU_GEMV_PLAIN, dt, 1, {700, 700, 700}, 8192, true, false, 2);
    gemv_case(s, sm, asym, 64, PCU_GEMV_RESID, dt, 1, {479}, 8192, true, false);
}

/* The ring kernel's general form (f16/bf16 x): K a multiple of 32 but
 * not of the pass, so the last pass is partial, and scale rows that are
 * not 16-byte aligned (Gemma 3's K of 1152 and 6912, Qwen3-4B's 2560),
 * for one code width (asym, sym: its two formats).  Passes per row: int4
 * 2, 7, 3, 8; int8 3, 14, 5, 15 (its K of 2560 is whole passes with
 * aligned scale rows: the exact form); int2 1, 4, 2, 4. */
static void ring_gen_cases(cudaStream_t s, int sm, int asym, int sym, int dt) {
    gemv_case(s, sm, asym, 32, PCU_GEMV_PLAIN, dt, 1, {1000, 333, 77}, 1152, true, false, 2);
    gemv_case(s, sm, asym, 32, PCU_GEMV_GATED, dt, 1, {3001, 3001}, 1152, true, false, 1);
    gemv_case(s, sm, sym, 64, PCU_GEMV_RESID, dt, 1, {1152}, 6912, true, false);
    gemv_case(s, sm, asym, 32, PCU_GEMV_PLAIN, dt, 1, {50001}, 2560, false, false);
    gemv_case(s, sm, sym, 32, PCU_GEMV_RESID, dt, 1, {700}, 7232, true, false);
    gemv_case(s, sm, asym, 32, PCU_GEMV_RESID, dt, 1, {479}, 6912, true, false);
}

/* int2 through the ring kernel: K a multiple of 2048 (its pass), the
 * same kinds of cases (on 132 multiprocessors the last two split a row
 * set's passes over 4 warps). */
static void ring2_cases(cudaStream_t s, int sm, int dt) {
    gemv_case(s, sm, PT_QFMT_INT2, 32, PCU_GEMV_PLAIN, dt, 1, {1000, 333, 77}, 4096, true, false, 1);
    gemv_case(s, sm, PT_QFMT_INT2, 64, PCU_GEMV_GATED, dt, 1, {5001, 5001}, 2048, true, false, 2);
    gemv_case(s, sm, PT_QFMT_INT2S, 128, PCU_GEMV_RESID, dt, 1, {2051}, 2048, true, false);
    gemv_case(s, sm, PT_QFMT_INT2, 32, PCU_GEMV_PLAIN, dt, 1, {50001}, 2048, false, false);
    gemv_case(s, sm, PT_QFMT_INT2S, 32, PCU_GEMV_PLAIN, dt, 1, {700, 700, 700}, 8192, true, false, 2);
    gemv_case(s, sm, PT_QFMT_INT2, 64, PCU_GEMV_RESID, dt, 1, {479}, 8192, true, false);
}

/* One decoder layer's products and the LM head of a model, format fmt
 * (groups of 32), bf16, one row of x, each checked then timed: q/k/v
 * (qrows + 2 x kvrows rows of K = hidden) with the norm prologue (norm:
 * 1 x * w, 2 x * (1 + w)), o + residual (hidden x qrows), gate and up (2
 * x inter x hidden) with the norm, down + residual (hidden x inter), the
 * LM head (vocab x hidden). */
static void decode_shapes(cudaStream_t s, int sm, int fmt, int64_t hidden, int64_t qrows, int64_t kvrows,
                          int64_t inter, int64_t vocab, int norm) {
    gemv_case(s, sm, fmt, 32, PCU_GEMV_PLAIN, DT_BF16, 1, {qrows, kvrows, kvrows}, hidden, true, true, norm);
    gemv_case(s, sm, fmt, 32, PCU_GEMV_RESID, DT_BF16, 1, {hidden}, qrows, true, true);
    gemv_case(s, sm, fmt, 32, PCU_GEMV_GATED, DT_BF16, 1, {inter, inter}, hidden, true, true, norm);
    gemv_case(s, sm, fmt, 32, PCU_GEMV_RESID, DT_BF16, 1, {hidden}, inter, true, true);
    gemv_case(s, sm, fmt, 32, PCU_GEMV_PLAIN, DT_BF16, 1, {vocab}, hidden, true, true);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows through a pipe */
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int sm = prop.multiProcessorCount;
    printf("%s, %d SMs; %d launches per timing\n", prop.name, sm, REPS);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    printf("every format and mode, small shapes\n");
    const struct {
        int fmt;
        int64_t G;
    } fmts[] = {{PT_QFMT_INT8, 32}, {PT_QFMT_INT8S, 64}, {PT_QFMT_INT4, 32}, {PT_QFMT_INT4S, 128},
                {PT_QFMT_INT2, 32}, {PT_QFMT_INT2S, 64}, {PT_QFMT_NVFP4, 16}};
    for (auto f : fmts) {
        for (int dt : {DT_F32, DT_BF16, DT_F16})
            for (int M : {1, 3}) {
                gemv_case(s, sm, f.fmt, f.G, PCU_GEMV_PLAIN, dt, M, {96, 32, 32}, 512, true, false);
                gemv_case(s, sm, f.fmt, f.G, PCU_GEMV_GATED, dt, M, {160, 160}, 256, true, false);
                gemv_case(s, sm, f.fmt, f.G, PCU_GEMV_RESID, dt, M, {64}, 1024, true, false);
            }
        for (int dt : {DT_F32, DT_BF16, DT_F16}) { /* the RMSNorm prologue */
            gemv_case(s, sm, f.fmt, f.G, PCU_GEMV_PLAIN, dt, 1, {96, 32, 32}, 512, true, false, 1);
            gemv_case(s, sm, f.fmt, f.G, PCU_GEMV_GATED, dt, 1, {160, 160}, 256, true, false, 2);
        }
        gemv_case(s, sm, f.fmt, f.G, PCU_GEMV_PLAIN, DT_BF16, 1, {1200}, 256, false, false); /* 4 rows per block */
        for (int dt : {DT_F32, DT_BF16, DT_F16}) dequant_case(s, sm, f.fmt, f.G, dt);
    }

    printf("int4, bf16, odd shapes\n");
    gemv_case(s, sm, PT_QFMT_INT4, 32, PCU_GEMV_PLAIN, DT_BF16, 1, {43, 22}, 576, true, false);
    gemv_case(s, sm, PT_QFMT_INT4S, 64, PCU_GEMV_GATED, DT_BF16, 1, {37, 37}, 576, true, false, 1);
    gemv_case(s, sm, PT_QFMT_INT4, 32, PCU_GEMV_RESID, DT_BF16, 1, {29}, 64, false, false);
    gemv_case(s, sm, PT_QFMT_INT4, 32, PCU_GEMV_RESID, DT_BF16, 1, {300}, 16384, true, false);

    printf("int4, one row of x, K a multiple of 1024 (the ring kernel): 1, 2 and 4 rows per item, 1-8 warps per row set\n");
    for (int dt : {DT_F32, DT_BF16, DT_F16}) ring_cases(s, sm, PT_QFMT_INT4, PT_QFMT_INT4S, 128, dt);

    printf("int8, one row of x, K a multiple of 512, f16 / bf16 (the ring kernel): as int4's\n");
    for (int dt : {DT_BF16, DT_F16}) ring_cases(s, sm, PT_QFMT_INT8, PT_QFMT_INT8S, 64, dt);

    printf("int2, one row of x, K a multiple of 2048, f16 / bf16 (the ring kernel)\n");
    for (int dt : {DT_BF16, DT_F16}) ring2_cases(s, sm, dt);

    printf("int4, int8, int2, one row of x, f16 / bf16, K no multiple of the pass (the ring kernel's general form)\n");
    for (int dt : {DT_BF16, DT_F16}) {
        ring_gen_cases(s, sm, PT_QFMT_INT4, PT_QFMT_INT4S, dt);
        ring_gen_cases(s, sm, PT_QFMT_INT8, PT_QFMT_INT8S, dt);
        ring_gen_cases(s, sm, PT_QFMT_INT2, PT_QFMT_INT2S, dt);
    }

    printf("Llama-3.2-1B decode shapes, bf16, one row of x\n");
    for (int fmt : {PT_QFMT_INT4, PT_QFMT_INT8, PT_QFMT_INT2}) decode_shapes(s, sm, fmt, 2048, 2048, 512, 8192, 128256, 1);

    printf("prefill: a panel of Llama-3.2-1B's gate weight dequantized, bf16\n");
    for (int fmt : {PT_QFMT_INT4, PT_QFMT_INT8, PT_QFMT_INT2}) dequant_time(s, sm, fmt, 8192, 2048, DT_BF16);

    printf("Qwen3-0.6B decode shapes, bf16, one row of x\n");
    for (int fmt : {PT_QFMT_INT4, PT_QFMT_INT8}) decode_shapes(s, sm, fmt, 1024, 2048, 1024, 3072, 151936, 1);

    printf("Gemma-3-1B decode shapes, bf16, one row of x\n");
    for (int fmt : {PT_QFMT_INT4, PT_QFMT_INT8, PT_QFMT_INT2}) decode_shapes(s, sm, fmt, 1152, 1024, 256, 6912, 262144, 2);
    CK(cudaStreamDestroy(s));
    printf(g_fail ? "SOME CHECKS FAILED\n" : "all checks passed\n");
    return g_fail;
}
