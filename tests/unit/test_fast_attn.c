/*
** test_fast_attn.c -- the CPU attention's float path, white-box:
**  1. cpu_fast_softmax_pv (backends/cpu/fast/attn.c) on its AVX-512 and
**     AVX2 paths (when the CPU has them) and its portable loop, against the same
**     softmax and value sum computed here in double from the values' exact
**     bits: value rows of f32, bf16 and f16, head widths that are and are
**     not multiples of 16 or of 8 (and take each vector step), odd
**     and even row counts, per-row column ranges (empty ones included),
**     excluded (-inf) columns and rows with every column excluded (zeros),
**     padded strides.  Each output within (4 n 2^-24 + 2e-6) of the sum
**     of |w v| / sum w; a NaN score makes its row NaN.
**  2. petrel.sdpa_cache run through a program with the float path and
**     with the double reference (cpu_fast_attn_enable), the same inputs:
**     caches of f32, bf16 and f16; no mask, causal, bool and float masks;
**     grouped-query heads; a prefill of several row blocks, then decode
**     steps; relative L2 between the two at most 1e-5 (the fp32 bound),
**     NaN fails.  A value of inf in a column every row excludes leaves the
**     output finite and equal to the reference's (the call is redone by
**     it); a row that sees no column gives zeros.
** Fresh random inputs each run (the seed is printed; --seed S replays).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/cpu/fast/fast.h"
#include "format/format.h"
#include "petrel.h"

#include "check.h"
#include "graph_util.h"
#include "rng_util.h"

enum { PORTABLE, AVX2, AVX512 }; /* AVX2: the AVX-512 loops off (on a CPU without AVX-512, as AVX512) */
static const char *path_name[] = {"portable", "avx2", "avx512"};

/* Set the hooks for path p; back to the defaults with AVX512. */
static void use_path(int p) {
    cpu_fast_attn_simd(p != PORTABLE);
    cpu_fast_attn_avx512(p == AVX512);
}

/* A value of dtype dt near x, its bits in *bits and its exact value
 * returned. */
static double make_value(petrel_dtype dt, double x, void *bits) {
    if (dt == PETREL_DTYPE_F32) {
        float f = (float)x;
        memcpy(bits, &f, 4);
        return f;
    }
    uint16_t h;
    if (dt == PETREL_DTYPE_BF16) {
        float f = (float)x;
        uint32_t u;
        memcpy(&u, &f, 4);
        h = (uint16_t)(u >> 16); /* truncated: a bf16 value */
    } else {
        h = pt_f32_to_f16((float)x);
    }
    memcpy(bits, &h, 2);
    return pt_half_to_f32(h, dt == PETREL_DTYPE_BF16); /* exact in float */
}

/* ---- 1. cpu_fast_softmax_pv ------------------------------------------------- */

static void pv_case(int path, petrel_dtype dt, int64_t M, int64_t n, int64_t Ev, int64_t pad) {
    int64_t lds = n + pad, ldv = Ev + pad, ldo = Ev + pad, es = (int64_t)petrel_dtype_size(dt);
    float *s = malloc(sizeof(float) * (size_t)(M * lds)), *s0 = malloc(sizeof(float) * (size_t)(M * lds));
    uint8_t *v = malloc((size_t)(n * ldv * es) + 1);
    double *vd = malloc(sizeof(double) * (size_t)(n * ldv + 1));
    float *out = malloc(sizeof(float) * (size_t)(M * ldo));
    int32_t *j0 = malloc(sizeof(int32_t) * (size_t)M), *j1 = malloc(sizeof(int32_t) * (size_t)M);
    if (!s || !s0 || !v || !vd || !out || !j0 || !j1) {
        CHECK(0, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n * ldv; i++) vd[i] = make_value(dt, rng_uniform(-2.0, 2.0), v + i * es);
    int nan_row = M > 2 && rng_int(0, 3) == 0 ? rng_int(0, (int)M - 1) : -1;
    for (int64_t r = 0; r < M; r++) {
        int kind = rng_int(0, 9); /* 0: an empty range; 1: every column excluded; else a random range */
        int64_t a = n ? rng_int(0, (int)n - 1) : 0, b = n ? rng_int(0, (int)n) : 0;
        if (a > b) { int64_t t = a; a = b; b = t; }
        if (kind >= 5) a = 0, b = n; /* most rows: the whole width */
        if (kind == 0) b = a;
        j0[r] = (int32_t)a, j1[r] = (int32_t)b;
        for (int64_t j = 0; j < lds; j++) {
            float x = (float)rng_uniform(-8.0, 8.0);
            if (kind == 1 || rng_int(0, 4) == 0) x = -INFINITY;
            s[r * lds + j] = x;
        }
        if (r == nan_row && b > a) s[r * lds + a + (b - a) / 2] = NAN;
    }
    memcpy(s0, s, sizeof(float) * (size_t)(M * lds));
    for (int64_t i = 0; i < M * ldo; i++) out[i] = NAN; /* every output must be written */
    use_path(path);
    cpu_fast_softmax_pv(M, s, lds, j0, j1, v, ldv, dt, Ev, out, ldo);
    use_path(AVX512);
    int bad = 0;
    double err2 = 0, ref2 = 0;
    for (int64_t r = 0; r < M; r++) {
        const float *sr = s0 + r * lds;
        double mx = -INFINITY;
        bool nan = false;
        for (int64_t j = j0[r]; j < j1[r]; j++) {
            if (isnan(sr[j])) nan = true;
            else if (sr[j] > mx) mx = sr[j];
        }
        for (int64_t e = 0; e < Ev; e++) {
            float got = out[r * ldo + e];
            if (nan) {
                bad += !isnan(got);
                continue;
            }
            double num = 0, mag = 0, sum = 0;
            for (int64_t j = j0[r]; j < j1[r] && mx > -INFINITY; j++) {
                double w = exp((double)sr[j] - mx);
                sum += w, num += w * vd[j * ldv + e], mag += fabs(w * vd[j * ldv + e]);
            }
            double ref = sum > 0 ? num / sum : 0.0, bound = sum > 0 ? mag / sum : 0.0;
            double d = got - ref;
            if (!(fabs(d) <= (4.0 * (double)n * ldexp(1.0, -24) + 2e-6) * bound + 1e-30)) bad++;
            err2 += d * d, ref2 += ref * ref;
        }
    }
    CHECK(bad == 0, "softmax_pv %s %s M %lld n %lld Ev %lld pad %lld: %d outputs out of bound (rel L2 %.3g)",
          path_name[path], petrel_dtype_name(dt), (long long)M, (long long)n, (long long)Ev, (long long)pad, bad,
          sqrt(err2 / (ref2 > 0 ? ref2 : 1)));
done:
    free(s), free(s0), free(v), free(vd), free(out), free(j0), free(j1);
}

static int check_softmax_pv(void) {
    static const int64_t shapes[][3] = {/* M, n, Ev */
                                        {1, 1, 16},   {2, 37, 64},  {3, 100, 128}, {5, 300, 256},
                                        {4, 17, 80},  {7, 64, 96},  {2, 1000, 48}, {6, 33, 40},
                                        {1, 2048, 128}, {9, 5, 16}, {8, 129, 112}, {3, 0, 32},
                                        {3, 50, 20},  {2, 70, 8}};
    static const petrel_dtype dts[] = {PETREL_DTYPE_F32, PETREL_DTYPE_BF16, PETREL_DTYPE_F16};
    int n = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
        for (int d = 0; d < 3; d++)
            for (int path = PORTABLE; path <= AVX512; path++, n++)
                pv_case(path, dts[d], shapes[c][0], shapes[c][1], shapes[c][2], (int64_t)(c % 3));
    return n;
}

/* ---- 2. petrel.sdpa_cache: the float path against the reference ------------- */

/* Graph g with value `out` as its output, written as a program file and
 * loaded (the file removed, g freed); NULL after a failure (counted). */
static petrel_program_t *load_graph(pt_graph *g, int32_t out, const char *name) {
    g->outputs = pt_calloc(1, sizeof *g->outputs);
    g->outputs[g->noutputs++] = (pt_user_output){{out, 0, 0}, PT_V_TENSOR};
    char why[600] = "";
    petrel_program_t *p = tg_load(g, "build-test-fast-attn.petrel", why, sizeof why);
    remove("build-test-fast-attn.petrel");
    pt_graph_free(g);
    CHECK(p, "%s: load: %s", name, why);
    return p;
}


typedef struct attn_case {
    const char *name;
    petrel_dtype cdt;           /* the caches' dtype */
    int64_t Hq, Hkv, E, Ev, S;  /* heads, widths, cache size */
    int64_t L, calls;           /* positions per call (1: decode steps); call c writes c L .. c L + L - 1 */
    int mask;                   /* 0 none, 1 bool, 2 float */
    bool causal;
    bool inf_v;                 /* inf in a value every row excludes (bool mask) */
} attn_case;

enum { WMAX = 256 }; /* the inputs' per-row stride in `data` */

/* Run case c with the float path on or off; the outputs of every call,
 * concatenated, malloc'd (NULL on failure). */
static float *run_attn(const attn_case *c, const float *data, const uint8_t *bmask, const float *fmask, bool fast) {
    int64_t Hq = c->Hq, Hkv = c->Hkv, E = c->E, Ev = c->Ev, S = c->S, L = c->L;
    pt_graph g;
    tg_init(&g);
    petrel_dtype f = PETREL_DTYPE_F32;
    int32_t q = tg_value(&g, "q", PT_SRC_USER_INPUT, f, 4, DIMS(1, Hq, L, E));
    int32_t k = tg_value(&g, "k", PT_SRC_USER_INPUT, f, 4, DIMS(1, Hkv, L, E));
    int32_t v = tg_value(&g, "v", PT_SRC_USER_INPUT, f, 4, DIMS(1, Hkv, L, Ev));
    int32_t pos = tg_value(&g, "pos", PT_SRC_USER_INPUT, PETREL_DTYPE_I64, 1, DIMS(L));
    int32_t m = -1;
    if (c->mask) m = tg_value(&g, "mask", PT_SRC_USER_INPUT, c->mask == 1 ? PETREL_DTYPE_BOOL : f, 4, DIMS(1, 1, L, S));
    int32_t kc = tg_value(&g, "kc", PT_SRC_BUFFER, c->cdt, 4, DIMS(1, Hkv, S, E));
    int32_t vc = tg_value(&g, "vc", PT_SRC_BUFFER, c->cdt, 4, DIMS(1, Hkv, S, Ev));
    int32_t like = tg_value(&g, "like", PT_SRC_USER_INPUT, f, 4, DIMS(1, Hq, L, Ev)); /* the output's shape */
    g.ninputs--;                                                                     /* not an input */
    int32_t o = HN(&g, PETREL_OP_PETREL_SDPA_CACHE, like, q, k, v, kc, vc, pos, m, -1, -2);
    g.nodes[g.nnodes - 1].args[8].items[0].i = c->causal; /* is_causal */
    tg_defaults(&g);
    petrel_program_t *p = load_graph(&g, o, c->name);
    if (!p) return NULL;
    int64_t per_call = Hq * L * Ev;
    float *res = malloc(sizeof(float) * (size_t)(c->calls * per_call));
    cpu_fast_attn_enable(fast);
    for (int64_t call = 0; res && call < c->calls; call++) {
        int64_t ps[64];
        for (int64_t i = 0; i < L; i++) ps[i] = call * L + i;
        const float *dq = data + call * (Hq + 2 * Hkv) * L * WMAX;
        float *in[3] = {malloc(sizeof(float) * (size_t)(Hq * L * E)), malloc(sizeof(float) * (size_t)(Hkv * L * E)),
                        malloc(sizeof(float) * (size_t)(Hkv * L * Ev))};
        for (int64_t r = 0; in[0] && in[1] && in[2] && r < Hq * L; r++)
            memcpy(in[0] + r * E, dq + r * WMAX, sizeof(float) * (size_t)E);
        for (int64_t r = 0; in[0] && in[1] && in[2] && r < Hkv * L; r++) {
            memcpy(in[1] + r * E, dq + (Hq * L + r) * WMAX, sizeof(float) * (size_t)E);
            memcpy(in[2] + r * Ev, dq + ((Hq + Hkv) * L + r) * WMAX, sizeof(float) * (size_t)Ev);
        }
        petrel_tensor_desc tq = {f, 4, {1, Hq, L, E}, in[0]}, tk = {f, 4, {1, Hkv, L, E}, in[1]};
        petrel_tensor_desc tv = {f, 4, {1, Hkv, L, Ev}, in[2]};
        petrel_tensor_desc tp = {PETREL_DTYPE_I64, 1, {L}, ps}, out;
        petrel_tensor_desc tm = {c->mask == 1 ? PETREL_DTYPE_BOOL : f, 4, {1, 1, L, S},
                                 c->mask == 1 ? (void *)(bmask + call * L * S) : (void *)(fmask + call * L * S)};
        bool ok = in[0] && in[1] && in[2] && !petrel_program_set_input(p, 0, &tq) &&
                  !petrel_program_set_input(p, 1, &tk) && !petrel_program_set_input(p, 2, &tv) &&
                  !petrel_program_set_input(p, 3, &tp) && !(c->mask && petrel_program_set_input(p, 4, &tm)) &&
                  !petrel_program_execute(p) && !petrel_program_get_output(&out, p, 0, NULL);
        free(in[0]), free(in[1]), free(in[2]);
        if (!ok) {
            CHECK(0, "%s: call %lld: %s", c->name, (long long)call, petrel_program_error(p));
            free(res);
            res = NULL;
            break;
        }
        memcpy(res + call * per_call, out.data, sizeof(float) * (size_t)per_call);
    }
    cpu_fast_attn_enable(true);
    petrel_program_free(p);
    return res;
}

static void attn_case_run(const attn_case *c, int path) {
    int64_t L = c->L, S = c->S, Hq = c->Hq, Ev = c->Ev, calls = c->calls, total = calls * Hq * L * Ev;
    size_t nd = (size_t)(calls * (Hq + 2 * c->Hkv) * L * WMAX);
    float *data = malloc(sizeof(float) * nd), *fmask = malloc(sizeof(float) * (size_t)(calls * L * S));
    uint8_t *bmask = malloc((size_t)(calls * L * S));
    if (!data || !fmask || !bmask) {
        CHECK(0, "out of memory");
        free(data), free(fmask), free(bmask);
        return;
    }
    for (size_t i = 0; i < nd; i++) data[i] = (float)rng_uniform(-1.0, 1.0);
    int64_t dead = 2; /* the column every row excludes, for inf_v */
    for (int64_t call = 0; call < calls; call++)
        for (int64_t i = 0; i < L; i++) {
            int64_t p = call * L + i;
            bool blind = rng_int(0, 7) == 0 && !(c->inf_v && i == L - 1); /* a row that sees nothing */
            for (int64_t j = 0; j < S; j++) {
                size_t at = (size_t)((call * L + i) * S + j);
                bool keep = j <= p && !blind && (c->inf_v ? j != dead : rng_int(0, 5) != 0);
                bmask[at] = keep;
                fmask[at] = j > p || blind ? -INFINITY : (float)rng_uniform(-3.0, 3.0);
            }
        }
    if (c->inf_v) /* the value the first call writes at cache position `dead` (L > dead) */
        data[((Hq + c->Hkv) * L + dead) * WMAX] = INFINITY;
    use_path(path);
    float *got = run_attn(c, data, bmask, fmask, true), *ref = run_attn(c, data, bmask, fmask, false);
    use_path(AVX512);
    if (got && ref) {
        double err2 = 0, ref2 = 0;
        int nonfinite = 0;
        for (int64_t i = 0; i < total; i++) {
            if (!isfinite(got[i]) || !isfinite(ref[i])) nonfinite++;
            double d = (double)got[i] - ref[i];
            err2 += d * d, ref2 += (double)ref[i] * ref[i];
        }
        double rel = sqrt(err2 / (ref2 > 0 ? ref2 : 1));
        CHECK(nonfinite == 0 && rel <= 1e-5 && ref2 > 0, "sdpa_cache %s (%s): rel L2 %.3g, %d non-finite", c->name,
              path_name[path], rel, nonfinite);
        if (c->inf_v) /* every call had a row reaching past `dead`: each was redone */
            CHECK(!memcmp(got, ref, sizeof(float) * (size_t)total),
                  "sdpa_cache %s (%s): a redone call differs from the reference", c->name, path_name[path]);
        /* blind rows: zeros on both paths */
        for (int64_t call = 0; c->mask == 1 && call < calls; call++)
            for (int64_t i = 0; i < L; i++) {
                bool seen = false;
                for (int64_t j = 0; j < S; j++) seen |= bmask[(call * L + i) * S + j] && !(c->causal && j > i);
                for (int64_t h = 0; !seen && h < Hq; h++)
                    for (int64_t e = 0; e < Ev; e++)
                        if (got[call * Hq * L * Ev + (h * L + i) * Ev + e] != 0.0f) {
                            CHECK(0, "sdpa_cache %s (%s): a row that sees nothing is not zero", c->name,
                                  path_name[path]);
                            h = Hq, e = Ev;
                        }
            }
    }
    free(got), free(ref), free(data), free(fmask), free(bmask);
}

static int check_sdpa_cache(void) {
    static const attn_case cases[] = {
        /* name, cache dtype, Hq, Hkv, E, Ev, S, L, calls, mask, causal, inf_v */
        {"f32 causal gqa2", PETREL_DTYPE_F32, 4, 2, 64, 64, 64, 20, 3, 0, true, false},
        {"bf16 bool gqa4 decode", PETREL_DTYPE_BF16, 8, 2, 128, 128, 48, 1, 40, 1, false, false},
        {"bf16 bool gqa4 prefill", PETREL_DTYPE_BF16, 8, 2, 128, 128, 96, 24, 3, 1, false, false},
        {"f16 float mask causal", PETREL_DTYPE_F16, 2, 2, 256, 256, 51, 17, 3, 2, true, false},
        {"bf16 bool E 40", PETREL_DTYPE_BF16, 4, 1, 40, 40, 36, 9, 4, 1, false, false},
        {"bf16 causal bool E 80", PETREL_DTYPE_BF16, 6, 3, 80, 80, 63, 21, 3, 1, true, false},
        {"f32 float mask Ev 48 decode", PETREL_DTYPE_F32, 3, 1, 64, 48, 30, 1, 30, 2, false, false},
        {"bf16 inf in an excluded value", PETREL_DTYPE_BF16, 4, 2, 64, 64, 40, 10, 4, 1, false, true},
    };
    int n = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int path = PORTABLE; path <= AVX512; path++, n++) attn_case_run(&cases[c], path);
    return n;
}

/* ---- 3. aten.scaled_dot_product_attention: the float path against the reference */

typedef struct sdpa_case {
    const char *name;
    petrel_dtype kvdt;            /* k and v (q and the output are f32) */
    int64_t B, Hq, Hkv, Bkv;      /* Bkv: k and v's batch (1: broadcast) */
    int64_t L, S, E, Ev;
    int mask;                     /* 0 none, 1 bool, 2 float */
    bool causal, gqa;
} sdpa_case;

/* Fill n values of dtype dt at p with random numbers in [-1, 1). */
static void fill(void *p, petrel_dtype dt, int64_t n) {
    int64_t es = (int64_t)petrel_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) make_value(dt, rng_uniform(-1.0, 1.0), (uint8_t *)p + i * es);
}

static float *run_sdpa(const sdpa_case *c, void *const in[4], bool fast) {
    pt_graph g;
    tg_init(&g);
    petrel_dtype f = PETREL_DTYPE_F32;
    int32_t q = tg_value(&g, "q", PT_SRC_USER_INPUT, f, 4, DIMS(c->B, c->Hq, c->L, c->E));
    int32_t k = tg_value(&g, "k", PT_SRC_USER_INPUT, c->kvdt, 4, DIMS(c->Bkv, c->Hkv, c->S, c->E));
    int32_t v = tg_value(&g, "v", PT_SRC_USER_INPUT, c->kvdt, 4, DIMS(c->Bkv, c->Hkv, c->S, c->Ev));
    int32_t m = -1;
    petrel_dtype mdt = c->mask == 1 ? PETREL_DTYPE_BOOL : f;
    if (c->mask) m = tg_value(&g, "m", PT_SRC_USER_INPUT, mdt, 4, DIMS(1, 1, c->L, c->S));
    int32_t like = tg_value(&g, "like", PT_SRC_USER_INPUT, f, 4, DIMS(c->B, c->Hq, c->L, c->Ev));
    g.ninputs--; /* the output's shape, not an input */
    int32_t o = HN(&g, PETREL_OP_SDPA, like, q, k, v, m, -1, -2, -1, -2);
    pt_node *n = &g.nodes[g.nnodes - 1];
    n->args[4].kind = PT_ARG_FLOAT, n->args[4].n = 1, n->args[4].items = pt_calloc(1, sizeof(pt_item)); /* dropout 0 */
    n->args[4].items[0].vid = -1;
    n->args[5].items[0].i = c->causal, n->args[7].items[0].i = c->gqa;
    petrel_program_t *p = load_graph(&g, o, c->name);
    if (!p) return NULL;
    int64_t nout = c->B * c->Hq * c->L * c->Ev;
    float *res = malloc(sizeof(float) * (size_t)nout);
    petrel_tensor_desc d[4] = {{f, 4, {c->B, c->Hq, c->L, c->E}, in[0]},
                               {c->kvdt, 4, {c->Bkv, c->Hkv, c->S, c->E}, in[1]},
                               {c->kvdt, 4, {c->Bkv, c->Hkv, c->S, c->Ev}, in[2]},
                               {c->mask == 1 ? PETREL_DTYPE_BOOL : f, 4, {1, 1, c->L, c->S}, in[3]}},
                       out;
    cpu_fast_attn_enable(fast);
    bool ok = res != NULL;
    for (int i = 0; ok && i < (c->mask ? 4 : 3); i++) ok = !petrel_program_set_input(p, i, &d[i]);
    ok = ok && !petrel_program_execute(p) && !petrel_program_get_output(&out, p, 0, NULL);
    cpu_fast_attn_enable(true);
    if (ok) {
        memcpy(res, out.data, sizeof(float) * (size_t)nout);
    } else {
        CHECK(0, "sdpa %s: run: %s", c->name, petrel_program_error(p));
        free(res);
        res = NULL;
    }
    petrel_program_free(p);
    return res;
}

static int check_sdpa(void) {
    static const sdpa_case cases[] = {
        /* name, k/v dtype, B, Hq, Hkv, Bkv, L, S, E, Ev, mask, causal, gqa */
        {"f32 causal", PETREL_DTYPE_F32, 2, 4, 4, 2, 30, 45, 64, 64, 0, true, false},
        {"bf16 bool", PETREL_DTYPE_BF16, 1, 3, 3, 1, 40, 70, 128, 128, 1, false, false},
        {"f16 gqa float mask", PETREL_DTYPE_F16, 1, 6, 2, 1, 17, 33, 64, 64, 2, false, true},
        {"bf16 one kv head, batch broadcast", PETREL_DTYPE_BF16, 2, 4, 1, 1, 9, 50, 80, 80, 1, true, false},
        {"f32 Ev 48, E 40", PETREL_DTYPE_F32, 1, 2, 2, 1, 12, 20, 40, 48, 2, true, false},
    };
    int n = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int path = PORTABLE; path <= AVX512; path++, n++) {
            const sdpa_case *c = &cases[ci];
            int64_t nq = c->B * c->Hq * c->L * c->E, nk = c->Bkv * c->Hkv * c->S * c->E,
                    nv = c->Bkv * c->Hkv * c->S * c->Ev, nm = c->L * c->S;
            void *in[4] = {malloc((size_t)nq * 4), malloc((size_t)nk * 4), malloc((size_t)nv * 4),
                           malloc((size_t)nm * 4)};
            if (!in[0] || !in[1] || !in[2] || !in[3]) {
                CHECK(0, "out of memory");
                for (int i = 0; i < 4; i++) free(in[i]);
                continue;
            }
            fill(in[0], PETREL_DTYPE_F32, nq), fill(in[1], c->kvdt, nk), fill(in[2], c->kvdt, nv);
            for (int64_t i = 0; i < c->L; i++)
                for (int64_t j = 0; j < c->S; j++) {
                    bool keep = rng_int(0, 4) != 0 && i != 3; /* row 3 sees nothing */
                    if (c->mask == 1) ((uint8_t *)in[3])[i * c->S + j] = keep;
                    else ((float *)in[3])[i * c->S + j] = keep ? (float)rng_uniform(-2.0, 2.0) : -INFINITY;
                }
            use_path(path);
            float *got = run_sdpa(c, in, true), *ref = run_sdpa(c, in, false);
            use_path(AVX512);
            if (got && ref) {
                int64_t no = c->B * c->Hq * c->L * c->Ev;
                double err2 = 0, ref2 = 0;
                int nonfinite = 0;
                for (int64_t i = 0; i < no; i++) {
                    nonfinite += !isfinite(got[i]);
                    double d = (double)got[i] - ref[i];
                    err2 += d * d, ref2 += (double)ref[i] * ref[i];
                }
                double rel = sqrt(err2 / (ref2 > 0 ? ref2 : 1));
                CHECK(nonfinite == 0 && rel <= 1e-5 && ref2 > 0, "sdpa %s (%s): rel L2 %.3g, %d non-finite", c->name,
                      path_name[path], rel, nonfinite);
            }
            free(got), free(ref);
            for (int i = 0; i < 4; i++) free(in[i]);
        }
    return n;
}

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL);
    if (argc == 3 && !strcmp(argv[1], "--seed")) seed = strtoull(argv[2], NULL, 10);
    printf("test_fast_attn: seed %llu (replay with --seed %llu)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    rng_state = seed;
    int n = check_softmax_pv();
    int m = check_sdpa_cache();
    int a = check_sdpa();
    printf("test_fast_attn: %d softmax cases, %d sdpa_cache cases, %d sdpa cases, %d failures\n", n, m, a, failures);
    return failures ? 1 : 0;
}
