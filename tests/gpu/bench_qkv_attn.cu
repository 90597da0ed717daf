/*
** bench_qkv_attn.cu -- the decode kernel of petrel.qkv_attn
** (qkv_attn_k.cu) against the two launches it replaces (quant_k.cu's q/k/v
** GEMV, then sdpa_k.cu's decode attention with the cache write), same
** weights, caches and inputs; then its time in a layer.
**
** Checks, per case (shape, format, dtype, position, mask): the three
** projections and the new cache rows within 1e-3 relative L2 of the
** launches' (the same products; equal but where the GEMV splits a row's
** sum over warps, then a rounding apart: the count of differing elements
** is printed); the attention output within 2e-3 (the keys are split over
** other warps: float sums in another order), no NaN.  Cases: Llama-3.2-1B's layer (K 2048, 32 / 8
** heads of 64) in int4 and int4 symmetric, groups of 32 and 128, bf16 and
** f16, positions 0, 300 and 2047 of a 2048 cache, a prefix mask, a
** sliding-window mask (keys before position - 16 hidden), a float mask and
** the causal flag; a layer of Qwen3-0.6B's shapes (K 1024, 16 / 8 heads
** of 128) without the norm prologue and the rope, and with both and the
** q/k norm (rounded to the dtype as Qwen3's; weights 1 + w, unrounded).
**
** Timing (us per layer; 16 Llama-3.2-1B layers with their own weights and
** caches in one CUDA graph, each with its o + residual, gate/up and down +
** residual ring GEMVs): the launches against the fused kernel, 301 valid
** positions, both given the executor's short range (positions below 512).
** Then each of the fused layer's four kernels repeated alone, and o and
** down alternating: what the layer pays beyond its kernels' own times.
**
**   nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_qkv_attn.cu \
**     src/backends/cuda/ops/qkv_attn_k.cu src/backends/cuda/ops/quant_k.cu \
**     src/backends/cuda/ops/sdpa_k.cu -o bench_qkv_attn
*/
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "bench_util.h"

#include "backends/cuda/ops/qkv_attn_k.h"
#include "backends/cuda/ops/quant_k.h"
#include "backends/cuda/ops/sdpa_k.h"
#include "core/quant_fmt.h"
#include "petrel.h"

static float h2f(uint16_t v, int dt) {
    if (dt == PETREL_DTYPE_BF16) return bf2f(v);
    __half_raw r;
    r.x = v;
    return __half2float(__half(r));
}
static uint16_t f2h(float f, int dt) {
    if (dt == PETREL_DTYPE_BF16) return f2bf(f);
    __half_raw r = __half_raw(__float2half_rn(f));
    return r.x;
}

/* device buffer of n random 16-bit floats in [lo, hi) */
static void *rnd16(size_t n, float lo, float hi, int dt) {
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; i++) h[i] = f2h(lo + (hi - lo) * (urand() & 0xffffff) / 16777216.0f, dt);
    void *d;
    CK(cudaMalloc(&d, n * 2));
    CK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
    return d;
}
static void *rndbytes(size_t n, unsigned mod) {
    std::vector<uint8_t> h(n);
    for (size_t i = 0; i < n; i++) h[i] = (uint8_t)(urand() % mod);
    void *d;
    CK(cudaMalloc(&d, n));
    CK(cudaMemcpy(d, h.data(), n, cudaMemcpyHostToDevice));
    return d;
}
static std::vector<uint16_t> get16(const void *d, size_t n) {
    std::vector<uint16_t> h(n);
    CK(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
    return h;
}

struct shape {
    const char *name;
    int64_t K;
    int Hq, Hkv, E;
    bool norm, rope;
    int qk; /* q/k norm: 0 none, 1 rounded to the dtype (Qwen3), 2 weights 1 + w, not rounded */
};

struct qw {
    uint8_t *c;
    void *s;
    int8_t *z;
    int64_t N;
};

/* One layer's operands on the device. */
struct layer {
    shape sh;
    int fmt, G, dt;
    int64_t S;
    qw w[3];
    void *x, *nw, *kc[2], *vc[2], *p[2][3], *out[2], *rc, *rs, *mask, *qw, *kw;
    int64_t *pos;
};

static qw make_w(int64_t N, int64_t K, int G, int fmt, int dt) {
    qw w;
    w.N = N;
    w.c = (uint8_t *)rndbytes((size_t)(N * K / 2), 256);
    w.s = rnd16((size_t)(N * K / G), 0.002f, 0.006f, dt);
    w.z = fmt == PT_QFMT_INT4 ? (int8_t *)rndbytes((size_t)(N * K / G), 16) : nullptr;
    return w;
}

static layer make_layer(shape sh, int fmt, int G, int dt, int64_t S) {
    layer L = {};
    L.sh = sh, L.fmt = fmt, L.G = G, L.dt = dt, L.S = S;
    const int64_t N[3] = {(int64_t)sh.Hq * sh.E, (int64_t)sh.Hkv * sh.E, (int64_t)sh.Hkv * sh.E};
    for (int i = 0; i < 3; i++) L.w[i] = make_w(N[i], sh.K, G, fmt, dt);
    L.x = rnd16((size_t)sh.K, -1.0f, 1.0f, dt);
    L.nw = rnd16((size_t)sh.K, 0.8f, 1.2f, dt);
    const size_t cn = (size_t)sh.Hkv * S * sh.E;
    uint32_t seed = g_rng;
    for (int v = 0; v < 2; v++) { /* both sets from the same draws: equal caches */
        g_rng = seed;
        L.kc[v] = rnd16(cn, -1.0f, 1.0f, dt);
        L.vc[v] = rnd16(cn, -1.0f, 1.0f, dt);
        for (int i = 0; i < 3; i++) CK(cudaMalloc(&L.p[v][i], (size_t)N[i] * 2));
        CK(cudaMalloc(&L.out[v], (size_t)sh.Hq * sh.E * 2));
    }
    L.qw = rnd16((size_t)sh.E, 0.5f, 1.5f, dt);
    L.kw = rnd16((size_t)sh.E, 0.5f, 1.5f, dt);
    L.rc = rnd16((size_t)sh.E, -1.0f, 1.0f, dt);
    L.rs = rnd16((size_t)sh.E, -1.0f, 1.0f, dt);
    CK(cudaMalloc(&L.pos, 8));
    CK(cudaMalloc(&L.mask, (size_t)S * 4));
    return L;
}

enum { M_NONE, M_PREFIX, M_WINDOW, M_FLOAT, M_CAUSAL };

/* The mask of kind mk for position p: bool (prefix, window) or f32. */
static int set_mask(layer &L, int mk, int64_t p) {
    if (mk == M_PREFIX || mk == M_WINDOW) {
        std::vector<uint8_t> m((size_t)L.S);
        for (int64_t j = 0; j < L.S; j++) m[j] = j <= p && (mk == M_PREFIX || j > p - 16);
        CK(cudaMemcpy(L.mask, m.data(), (size_t)L.S, cudaMemcpyHostToDevice));
        return PETREL_DTYPE_BOOL;
    }
    std::vector<float> m((size_t)L.S);
    for (int64_t j = 0; j < L.S; j++) m[j] = j <= p ? (float)((urand() % 1000) / 1000.0 - 0.5) : -INFINITY;
    CK(cudaMemcpy(L.mask, m.data(), (size_t)L.S * 4, cudaMemcpyHostToDevice));
    return PETREL_DTYPE_F32;
}

static pcu_qweight qweight(const layer &L, int i) {
    pcu_qweight r = {};
    const int64_t K = L.sh.K;
    r.codes = L.w[i].c, r.code_rs = K / 2, r.scales = (const uint8_t *)L.w[i].s, r.sdt = L.dt;
    r.s_rs = K / L.G, r.s_cs = 1, r.zeros = L.w[i].z, r.z_rs = K / L.G, r.z_cs = 1, r.N = L.w[i].N;
    return r;
}

/* the launches: q/k/v GEMV into p[0], attention (with the cache write) into out[0] */
static cudaError_t launches(cudaStream_t st, const layer &L, int mk, int mdt, int sms) {
    const shape &sh = L.sh;
    pcu_qgemv g = {};
    g.dtype = L.dt, g.fmt = L.fmt, g.G = L.G, g.M = 1, g.w_const = 1, g.x = L.x, g.ldx = sh.K, g.K = sh.K;
    g.mode = PCU_GEMV_PLAIN, g.nw = 3;
    for (int i = 0; i < 3; i++) g.w[i] = qweight(L, i), g.out[i] = L.p[0][i];
    if (sh.norm) g.norm = 1, g.norm_w = L.nw, g.norm_eps = 1e-5f;
    cudaError_t e = pcu_qgemv_launch(st, &g, sms);
    if (e != cudaSuccess) return e;
    pcu_attn a = {};
    const int64_t E = sh.E, gq = sh.Hq / sh.Hkv;
    a.dtype = L.dt, a.q = L.p[0][0], a.k = L.kc[0], a.v = L.vc[0], a.out = L.out[0], a.nb = 2;
    a.bshape[0] = 1, a.bshape[1] = sh.Hq;
    a.qb[0] = sh.Hq * E, a.qb[1] = E;
    a.kb[0] = a.vb[0] = sh.Hkv * L.S * E, a.kb[1] = a.vb[1] = L.S * E;
    a.kdiv = a.vdiv = a.group = gq;
    a.L = 1, a.S = L.S, a.E = a.Ev = E;
    a.q_sl = E, a.q_se = 1, a.k_ss = a.v_ss = E, a.k_se = a.v_se = 1;
    if (mk != M_NONE && mk != M_CAUSAL)
        a.mask = L.mask, a.mask_dtype = mdt, a.m_sl = L.S, a.m_ss = 1; /* mb: 0, shared by the heads */
    a.causal = mk == M_CAUSAL;
    a.scale = (float)(1.0 / sqrt((double)E));
    a.pos = L.pos, a.pos_dt = PETREL_DTYPE_I64, a.kn = L.p[0][1], a.vn = L.p[0][2];
    a.kn_dt = a.vn_dt = L.dt, a.kn_se = a.vn_se = 1;
    a.knb[0] = a.vnb[0] = sh.Hkv * E, a.knb[1] = a.vnb[1] = E;
    if (sh.rope) a.rcos = L.rc, a.rsin = L.rs, a.R = E;
    if (sh.qk) a.qnw = L.qw, a.knw = L.kw, a.neps = 1e-6f, a.nadd_one = sh.qk == 2, a.nround = sh.qk == 1;
    a.keys_below = L.S > 512 ? 512 : 0; /* the executor's short range, where the library fuses */
    if (!pcu_attn_writes_cache(&a, sms)) {
        printf("  the attention launch does not write the cache itself: case not comparable\n");
        g_fail = 1;
    }
    return pcu_attn_launch(st, &a, sms, NULL);
}

static pcu_qkv_attn fused_args(const layer &L, int mk, int mdt) {
    const shape &sh = L.sh;
    pcu_qkv_attn a = {};
    a.dtype = L.dt, a.x = L.x, a.K = sh.K, a.norm_w = sh.norm ? L.nw : nullptr, a.norm_eps = 1e-5f;
    a.fmt = L.fmt, a.G = L.G;
    for (int i = 0; i < 3; i++)
        a.codes[i] = L.w[i].c, a.scales[i] = L.w[i].s, a.zeros[i] = L.w[i].z, a.p[i] = L.p[1][i];
    a.Hq = sh.Hq, a.Hkv = sh.Hkv, a.E = sh.E;
    a.kc = L.kc[1], a.vc = L.vc[1], a.k_hs = a.v_hs = L.S * sh.E, a.k_ss = a.v_ss = sh.E, a.S = L.S;
    a.pos = L.pos, a.pos_dt = PETREL_DTYPE_I64;
    if (mk != M_NONE && mk != M_CAUSAL) a.mask = L.mask, a.mask_dtype = mdt, a.m_hs = 0, a.m_ss = 1;
    a.causal = mk == M_CAUSAL;
    a.scale = (float)(1.0 / sqrt((double)sh.E));
    if (sh.rope) a.rcos = L.rc, a.rsin = L.rs, a.R = sh.E;
    if (sh.qk) a.qnw = L.qw, a.knw = L.kw, a.neps = 1e-6f, a.nadd_one = sh.qk == 2, a.nround = sh.qk == 1;
    a.keys_below = L.S > 512 ? 512 : 0;
    a.out = L.out[1];
    return a;
}

/* Elements of a and b (n of dtype dt) that differ; their relative L2 distance in *rel. */
static size_t ndiff(const void *a, const void *b, size_t n, int dt, double *rel) {
    std::vector<uint16_t> x = get16(a, n), y = get16(b, n);
    size_t d = 0;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double u = h2f(x[i], dt), v = h2f(y[i], dt);
        d += x[i] != y[i];
        num += (u - v) * (u - v), den += u * u;
        if (v != v) num = INFINITY;
    }
    *rel = den > 0 ? sqrt(num / den) : sqrt(num);
    return d;
}

static void check_case(cudaStream_t st, layer &L, int64_t p, int mk, int sms) {
    const shape &sh = L.sh;
    CK(cudaMemcpy(L.pos, &p, 8, cudaMemcpyHostToDevice));
    const int mdt = mk == M_NONE || mk == M_CAUSAL ? 0 : set_mask(L, mk, p);
    CK(launches(st, L, mk, mdt, sms));
    pcu_qkv_attn f = fused_args(L, mk, mdt);
    if (!pcu_qkv_attn_fits(&f)) {
        printf("  FAIL %s: the fused kernel does not take it\n", sh.name);
        g_fail = 1;
        return;
    }
    CK(pcu_qkv_attn_launch(st, &f));
    CK(cudaStreamSynchronize(st));
    const int64_t N[3] = {(int64_t)sh.Hq * sh.E, (int64_t)sh.Hkv * sh.E, (int64_t)sh.Hkv * sh.E};
    size_t dp = 0, dr = 0; /* elements differing: projections, new cache rows */
    double rp = 0, rr = 0, t;
    for (int i = 0; i < 3; i++) dp += ndiff(L.p[0][i], L.p[1][i], (size_t)N[i], L.dt, &t), rp = t > rp ? t : rp;
    for (int h = 0; h < sh.Hkv; h++) {
        const size_t o = ((size_t)h * L.S + (size_t)p) * sh.E;
        dr += ndiff((uint16_t *)L.kc[0] + o, (uint16_t *)L.kc[1] + o, (size_t)sh.E, L.dt, &t), rr = t > rr ? t : rr;
        dr += ndiff((uint16_t *)L.vc[0] + o, (uint16_t *)L.vc[1] + o, (size_t)sh.E, L.dt, &t), rr = t > rr ? t : rr;
    }
    /* the projections' sums in the GEMV's order: equal but for a rounding of
     * the dtype where the GEMV splits a row over warps (then 1 ulp at few
     * elements) */
    const bool proj = rp <= 1e-3, rows = rr <= 1e-3;
    std::vector<uint16_t> a = get16(L.out[0], (size_t)N[0]), b = get16(L.out[1], (size_t)N[0]);
    double num = 0, den = 0;
    bool nan = false;
    for (size_t i = 0; i < a.size(); i++) {
        double u = h2f(a[i], L.dt), v = h2f(b[i], L.dt);
        nan |= v != v;
        num += (u - v) * (u - v), den += u * u;
    }
    const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    const bool ok = proj && rows && !nan && rel <= 2e-3 && (den > 0 || mk == M_CAUSAL);
    static const char *mn[] = {"no mask", "prefix mask", "window mask", "float mask", "causal"};
    printf("  %s %-5s %s g%-3d %s pos %4lld %-11s: projections %zu differ (rel L2 %.1e), new rows %zu (%.1e), "
           "attention rel L2 %.2e  %s\n",
           sh.name, L.fmt == PT_QFMT_INT4 ? "int4" : "int4s", L.dt == PETREL_DTYPE_BF16 ? "bf16" : "f16 ", L.G,
           sh.norm ? "norm" : "    ", (long long)p, mn[mk], dp, rp, dr, rr, rel, ok ? "ok" : "FAIL");
    if (!ok && getenv("QA_DUMP"))
        for (size_t i = 0; i < 8; i++) printf("    out[%zu] %g %g\n", i, h2f(a[i], L.dt), h2f(b[i], L.dt));
    if (!ok) g_fail = 1;
    /* the next case must write them again */
    for (int i = 0; i < 3; i++) CK(cudaMemset(L.p[1][i], 0xff, (size_t)N[i] * 2));
    CK(cudaMemset(L.out[1], 0xff, (size_t)N[0] * 2));
}

static void free_layer(layer &L) {
    for (int i = 0; i < 3; i++) {
        cudaFree(L.w[i].c), cudaFree(L.w[i].s), cudaFree(L.w[i].z);
        for (int v = 0; v < 2; v++) cudaFree(L.p[v][i]);
    }
    for (int v = 0; v < 2; v++) cudaFree(L.kc[v]), cudaFree(L.vc[v]), cudaFree(L.out[v]);
    cudaFree(L.x), cudaFree(L.nw), cudaFree(L.rc), cudaFree(L.rs), cudaFree(L.mask), cudaFree(L.pos);
    cudaFree(L.qw), cudaFree(L.kw);
}

int main() {
    int dev = 0, sms = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    static const shape llama = {"llama-1b", 2048, 32, 8, 64, true, true, 0};
    static const shape qwen = {"qwen-like", 1024, 16, 8, 128, false, false, 0};
    static const shape qwen3 = {"qwen3-0.6b", 1024, 16, 8, 128, true, true, 1};
    static const shape qkone = {"qk 1 + w", 1024, 16, 8, 128, true, true, 2};
    const int64_t S = 2048;

    printf("== checks: fused against the launches\n");
    static const struct {
        const shape *sh;
        int fmt, G, dt;
        int n;
        struct {
            int64_t p;
            int mk;
        } c[7];
    } sets[] = {
        {&llama, PT_QFMT_INT4, 32, PETREL_DTYPE_BF16, 7,
         {{0, M_PREFIX}, {300, M_PREFIX}, {2047, M_PREFIX}, {700, M_WINDOW}, {301, M_FLOAT}, {5, M_CAUSAL},
          {1500, M_NONE}}},
        {&llama, PT_QFMT_INT4S, 128, PETREL_DTYPE_BF16, 1, {{300, M_PREFIX}}},
        {&llama, PT_QFMT_INT4, 32, PETREL_DTYPE_F16, 2, {{300, M_PREFIX}, {1000, M_WINDOW}}},
        {&qwen, PT_QFMT_INT4, 64, PETREL_DTYPE_BF16, 2, {{300, M_PREFIX}, {2047, M_FLOAT}}},
        {&qwen, PT_QFMT_INT4S, 32, PETREL_DTYPE_F16, 1, {{64, M_PREFIX}}},
        {&qwen3, PT_QFMT_INT4, 32, PETREL_DTYPE_BF16, 2, {{300, M_PREFIX}, {2047, M_PREFIX}}},
        {&qkone, PT_QFMT_INT4S, 32, PETREL_DTYPE_F16, 1, {{200, M_WINDOW}}},
    };
    for (const auto &cs : sets) {
        layer L = make_layer(*cs.sh, cs.fmt, cs.G, cs.dt, S);
        for (int k = 0; k < cs.n; k++) check_case(st, L, cs.c[k].p, cs.c[k].mk, sms);
        free_layer(L);
    }

    /* timing: 16 Llama-3.2-1B layers, each with o + residual, gate/up + norm and down + residual */
    printf("== time, us per layer (16 layers in one graph, 301 valid positions)\n");
    const int NL = 16, HID = 2048, INTER = 8192;
    std::vector<layer> Ls;
    std::vector<qw> wo, wg, wu, wd;
    for (int l = 0; l < NL; l++) {
        Ls.push_back(make_layer(llama, PT_QFMT_INT4, 32, PETREL_DTYPE_BF16, S));
        int64_t p = 300;
        CK(cudaMemcpy(Ls[l].pos, &p, 8, cudaMemcpyHostToDevice));
        set_mask(Ls[l], M_PREFIX, p);
        wo.push_back(make_w(HID, HID, 32, PT_QFMT_INT4, PETREL_DTYPE_BF16));
        wg.push_back(make_w(INTER, HID, 32, PT_QFMT_INT4, PETREL_DTYPE_BF16));
        wu.push_back(make_w(INTER, HID, 32, PT_QFMT_INT4, PETREL_DTYPE_BF16));
        wd.push_back(make_w(HID, INTER, 32, PT_QFMT_INT4, PETREL_DTYPE_BF16));
    }
    void *o = rnd16(HID, -1, 1, PETREL_DTYPE_BF16), *hb = rnd16(INTER, -1, 1, PETREL_DTYPE_BF16);
    auto pw = [](const qw &w, int64_t K) {
        pcu_qweight r = {};
        r.codes = w.c, r.code_rs = K / 2, r.scales = (const uint8_t *)w.s, r.sdt = PETREL_DTYPE_BF16;
        r.s_rs = K / 32, r.s_cs = 1, r.zeros = w.z, r.z_rs = K / 32, r.z_cs = 1, r.N = w.N;
        return r;
    };
    auto gv = [&]() {
        pcu_qgemv g = {};
        g.dtype = PETREL_DTYPE_BF16, g.fmt = PT_QFMT_INT4, g.G = 32, g.M = 1, g.w_const = 1;
        g.res_dtype = PETREL_DTYPE_BF16, g.res_sm = HID, g.res_sn = 1;
        return g;
    };
    auto launch_o = [&](int l, const void *a_out) { /* o + residual */
        pcu_qgemv g = gv();
        g.x = a_out, g.ldx = HID, g.K = HID, g.mode = PCU_GEMV_RESID, g.nw = 1;
        g.w[0] = pw(wo[l], HID), g.out[0] = o, g.res = Ls[l].x;
        return pcu_qgemv_launch(st, &g, sms);
    };
    auto launch_gu = [&](int l) { /* norm, gate/up, silu(gate) * up */
        pcu_qgemv g = gv();
        g.x = o, g.ldx = HID, g.K = HID, g.mode = PCU_GEMV_GATED, g.act = PCU_ACT_SILU, g.nw = 2;
        g.norm = 1, g.norm_w = Ls[l].nw, g.norm_eps = 1e-5f;
        g.w[0] = pw(wg[l], HID), g.w[1] = pw(wu[l], HID), g.out[0] = hb;
        return pcu_qgemv_launch(st, &g, sms);
    };
    auto launch_d = [&](int l) { /* down + residual, into the next layer's x */
        pcu_qgemv g = gv();
        g.x = hb, g.ldx = INTER, g.K = INTER, g.mode = PCU_GEMV_RESID, g.nw = 1;
        g.w[0] = pw(wd[l], INTER), g.out[0] = Ls[(l + 1) % NL].x, g.res = o;
        return pcu_qgemv_launch(st, &g, sms);
    };
    auto rest = [&](int l, const void *a_out) {
        cudaError_t e = launch_o(l, a_out);
        if (e == cudaSuccess) e = launch_gu(l);
        return e == cudaSuccess ? launch_d(l) : e;
    };
    const int reps = 10 * NL;
    for (int rep = 0; rep < 3; rep++) {
        double a = graph_us(st, reps, [&](int i) {
            const int l = i % NL;
            cudaError_t e = launches(st, Ls[l], M_PREFIX, PETREL_DTYPE_BOOL, sms);
            return e == cudaSuccess ? rest(l, Ls[l].out[0]) : e;
        });
        double b = graph_us(st, reps, [&](int i) {
            const int l = i % NL;
            pcu_qkv_attn f = fused_args(Ls[l], M_PREFIX, PETREL_DTYPE_BOOL);
            cudaError_t e = pcu_qkv_attn_launch(st, &f);
            return e == cudaSuccess ? rest(l, Ls[l].out[1]) : e;
        });
        double c = graph_us(st, reps, [&](int i) { return launches(st, Ls[i % NL], M_PREFIX, PETREL_DTYPE_BOOL, sms); });
        double d = graph_us(st, reps, [&](int i) {
            pcu_qkv_attn f = fused_args(Ls[i % NL], M_PREFIX, PETREL_DTYPE_BOOL);
            return pcu_qkv_attn_launch(st, &f);
        });
        printf("  layer: launches %.2f, fused %.2f;  q/k/v + attention alone: launches %.2f, fused %.2f\n", a, b, c, d);
        /* Where the fused layer's time goes besides each kernel's own: the
         * other three kernels repeated alone too (one kernel's code and
         * shared-memory layout throughout, each launch another layer's
         * weights), and two of them alternating.  A layer slower than the
         * sum of its kernels alone pays for switching between kernels
         * (their code fetched anew, the shared-memory layout changed, less
         * overlap of one launch's prologue with the last one's tail). */
        double to = graph_us(st, reps, [&](int i) { return launch_o(i % NL, Ls[i % NL].out[1]); });
        double tg = graph_us(st, reps, [&](int i) { return launch_gu(i % NL); });
        double td = graph_us(st, reps, [&](int i) { return launch_d(i % NL); });
        double tod = graph_us(st, reps, [&](int i) {
            cudaError_t e = launch_o(i % NL, Ls[i % NL].out[1]);
            return e == cudaSuccess ? launch_d(i % NL) : e;
        });
        printf("  the fused layer's kernels alone: qkv_attn %.2f, o %.2f, gate/up %.2f, down %.2f: sum %.2f against "
               "the layer's %.2f;  o and down alternating %.2f a pair against %.2f\n",
               d, to, tg, td, d + to + tg + td, b, tod, to + td);
    }
    printf("CHECKS %s\n", g_fail ? "FAILED" : "passed");
    return g_fail;
}
