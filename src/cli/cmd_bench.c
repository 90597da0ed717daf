/*
** cmd_bench.c -- `petrel bench -m MODEL [...]`: speed of an exported LM
** (python/petrel_export.py) at batch 1, through the public LLM API only:
**
**   prefill   one chunk of N tokens into an empty KV cache, for each
**             --prefill N: N / seconds
**   TTFT      a --prompt-token prefill + sampling the first token
**   decode    greedy tokens per second over the --gen tokens that follow a
**             --prompt-token prompt (the first token, which comes from the
**             prefill, is left out)
**
** The prompt is token ids drawn from a fixed-seed splitmix64 stream
** (id = next() % vocab; bench/torch_bench.py draws the same ids), so two
** engines can be compared token for token.  Every measurement runs --warmup
** times unmeasured, then --reps times from a reset cache, and reports the
** median.  Times come from CLOCK_MONOTONIC around calls that return only
** once their results are on the host (the runtime synchronizes the device
** when it hands out the logits).  One human line per measurement, or one
** JSON object with --json (see bench/README.md for its fields).
**
** --profile adds two profiled runs, a --prompt prefill alone and a decode
** run profiled from the first sampled token: node by node (no device
** graphs), each node's time from the device's timestamps, summed per
** operator and per step.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

#define MAX_PREFILL 16
#define MAX_REPS 1000

typedef struct bench_opts {
    const char *model, *backend; /* backend NULL: the program's own placement */
    int32_t prompt, gen, reps, warmup;
    int32_t prefill[MAX_PREFILL];
    int n_prefill;
    uint64_t seed;
    bool json, profile;
    int32_t threads; /* --threads: 0 = one per CPU */
} bench_opts;

/* One prefill row: tokens per second, or why it was skipped. */
typedef struct prefill_row {
    int32_t tokens;
    double s;          /* median seconds; 0 when skipped */
    char skipped[160]; /* empty when measured */
} prefill_row;

typedef struct decode_result {
    double ttft_s, tok_s;
    int32_t *tokens;   /* (gen) the greedy ids of the first measured run */
    int32_t n_tokens;
    bool repeatable;   /* every measured run produced the same ids */
} decode_result;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: tiny, and the same in Python (bench/torch_bench.py). */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts them in place). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- flags ----------------------------------------------------------------------- */

static bool parse_int(const char *s, long long lo, long long hi, int32_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = (int32_t)v;
    return true;
}

/* "512,2048" -> o->prefill; false on anything else. */
static bool parse_list(const char *s, bench_opts *o) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return false;
    strcpy(buf, s);
    o->n_prefill = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->n_prefill == MAX_PREFILL || !parse_int(t, 1, INT32_MAX, &o->prefill[o->n_prefill])) return false;
        o->n_prefill++;
    }
    /* strtok_r skips empty fields: "512,,1" or ",512" are typos, not lists */
    return o->n_prefill > 0 && s[0] != ',' && s[strlen(s) - 1] != ',' && !strstr(s, ",,");
}

/* Parse argv into *o; returns 0, or 1 with the message printed. */
static int parse_flags(bench_opts *o, int argc, char **argv) {
    *o = (bench_opts){.prompt = 128, .gen = 256, .reps = 3, .warmup = 1,
                      .prefill = {512, 2048}, .n_prefill = 2};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json") || !strcmp(a, "--profile")) {
            *(a[2] == 'j' ? &o->json : &o->profile) = true;
            continue;
        }
        bool takes_value = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--backend") ||
                           !strcmp(a, "--prompt") || !strcmp(a, "--gen") || !strcmp(a, "--prefill") ||
                           !strcmp(a, "--reps") || !strcmp(a, "--warmup") || !strcmp(a, "--seed") ||
                           !strcmp(a, "--threads");
        if (!takes_value) {
            if (a[0] == '-' && a[1]) return cli_error("bench: unknown option '%s' (see 'petrel help')", a);
            return cli_error("bench: unexpected argument '%s' (the model goes after -m)", a);
        }
        if (i + 1 >= argc) return cli_error("bench: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o->model = v;
        } else if (!strcmp(a, "--backend")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda")) return cli_error("bench: --backend must be cpu or cuda, not '%s'", v);
            o->backend = v;
        } else if (!strcmp(a, "--prompt")) {
            if (!parse_int(v, 1, INT32_MAX, &o->prompt)) return cli_error("bench: --prompt must be an integer >= 1, not '%s'", v);
        } else if (!strcmp(a, "--gen")) {
            if (!parse_int(v, 2, INT32_MAX, &o->gen))
                return cli_error("bench: --gen must be an integer >= 2 (decode speed needs two tokens), not '%s'", v);
        } else if (!strcmp(a, "--prefill")) {
            if (!parse_list(v, o))
                return cli_error("bench: --prefill must be up to %d comma-separated integers >= 1 (e.g. 512,2048), not '%s'",
                                 MAX_PREFILL, v);
        } else if (!strcmp(a, "--reps")) {
            if (!parse_int(v, 1, MAX_REPS, &o->reps))
                return cli_error("bench: --reps must be an integer in [1, %d], not '%s'", MAX_REPS, v);
        } else if (!strcmp(a, "--threads")) {
            if (!cli_parse_threads(v, &o->threads))
                return cli_error("bench: --threads must be an integer from 0 (one per CPU) to 64, not '%s'", v);
        } else if (!strcmp(a, "--warmup")) {
            if (!parse_int(v, 0, MAX_REPS, &o->warmup))
                return cli_error("bench: --warmup must be an integer in [0, %d], not '%s'", MAX_REPS, v);
        } else { /* --seed */
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (end == v || *end || errno || v[0] == '-') return cli_error("bench: --seed must be an integer >= 0, not '%s'", v);
            o->seed = (uint64_t)s;
        }
    }
    if (!o->model) return cli_error("bench: -m MODEL is required (see 'petrel help')");
    if (o->json && o->profile) return cli_error("bench: --profile prints a table; use it without --json");
    return 0;
}

/* ---- measuring ------------------------------------------------------------------- */

typedef struct token_sink {
    int32_t *ids;
    int32_t n, cap;
} token_sink;

static void collect(int32_t token, void *user) {
    token_sink *s = user;
    if (s->n < s->cap) s->ids[s->n++] = token;
}

/* One generate call from an empty cache; *wall_s = its duration. */
static int run_once(petrel_llm_t *llm, const int32_t *ids, int32_t n, int32_t max_new, token_sink *sink,
                    petrel_llm_stats *st, double *wall_s) {
    if (petrel_llm_reset(llm) != PETREL_OK) return cli_error("bench: %s", petrel_llm_error(llm));
    petrel_llm_gen_params gp = petrel_llm_gen_default_params();
    gp.max_new_tokens = max_new;
    gp.ignore_eos = true; /* random weights emit EOS ids too; every run has the same length */
    gp.on_token = sink ? collect : NULL;
    gp.user = sink;
    double t0 = now_s();
    petrel_status s = petrel_llm_generate(llm, ids, (size_t)n, &gp, st);
    *wall_s = now_s() - t0;
    if (s != PETREL_OK) return cli_error("bench: %s", petrel_llm_error(llm));
    return 0;
}

/* Median seconds of a one-chunk prefill of n tokens into an empty cache. */
static int bench_prefill(petrel_llm_t *llm, const bench_opts *o, const int32_t *ids, int32_t n, double *out) {
    double *t = malloc((size_t)o->reps * sizeof *t);
    if (!t) return cli_error("bench: out of memory");
    petrel_llm_stats st;
    for (int r = 0; r < o->warmup + o->reps; r++) {
        double s;
        if (run_once(llm, ids, n, 0, NULL, &st, &s)) {
            free(t);
            return 1;
        }
        if (r >= o->warmup) t[r - o->warmup] = s;
    }
    *out = median(t, o->reps);
    free(t);
    return 0;
}

/* TTFT and decode speed (medians) over runs of --prompt + --gen tokens. */
static int bench_decode(petrel_llm_t *llm, const bench_opts *o, const int32_t *ids, decode_result *d) {
    double *ttft = malloc((size_t)o->reps * sizeof *ttft), *tps = malloc((size_t)o->reps * sizeof *tps);
    token_sink sink = {.ids = malloc((size_t)o->gen * sizeof *sink.ids), .cap = o->gen};
    d->tokens = malloc((size_t)o->gen * sizeof *d->tokens);
    int rc = 0;
    if (!ttft || !tps || !sink.ids || !d->tokens) rc = cli_error("bench: out of memory");
    d->repeatable = true;
    for (int r = 0; !rc && r < o->warmup + o->reps; r++) {
        petrel_llm_stats st;
        double wall;
        sink.n = 0;
        if ((rc = run_once(llm, ids, o->prompt, o->gen, &sink, &st, &wall))) break;
        if (r < o->warmup) continue;
        int m = r - o->warmup;
        ttft[m] = st.ttft_s;
        tps[m] = st.decode_tok_s;
        if (m == 0) {
            memcpy(d->tokens, sink.ids, (size_t)sink.n * sizeof *sink.ids);
            d->n_tokens = sink.n;
        } else if (sink.n != d->n_tokens || memcmp(sink.ids, d->tokens, (size_t)sink.n * sizeof *sink.ids)) {
            d->repeatable = false;
        }
    }
    if (!rc) {
        d->ttft_s = median(ttft, o->reps);
        d->tok_s = median(tps, o->reps);
    }
    free(ttft);
    free(tps);
    free(sink.ids);
    return rc;
}

/* ---- profile --------------------------------------------------------------------- */

typedef struct prof_sink {
    petrel_program_t *prog;
    int32_t n;
    petrel_status st;
} prof_sink;

/* The first sampled token: prefill is over, the decode steps follow. */
static void prof_token(int32_t token, void *user) {
    (void)token;
    prof_sink *s = user;
    if (s->n++ == 0) s->st = petrel_program_set_profiling(s->prog, true);
}

/* Per operator and backend: calls and milliseconds summed over nodes. */
typedef struct prof_row {
    const char *op, *backend;
    int64_t calls;
    double ms;
} prof_row;

static int cmp_row(const void *a, const void *b) {
    double x = ((const prof_row *)a)->ms, y = ((const prof_row *)b)->ms;
    return (x < y) - (x > y);
}

/* Print the program's profile per operator, per execute (node 0's calls). */
static int print_profile(petrel_program_t *p, const char *what) {
    int nn = petrel_program_profile(p, NULL, 0);
    petrel_profile_entry *e = malloc((size_t)(nn ? nn : 1) * sizeof *e);
    prof_row *rows = malloc((size_t)(nn ? nn : 1) * sizeof *rows);
    if (!e || !rows) {
        free(e);
        free(rows);
        return cli_error("bench: out of memory");
    }
    petrel_program_profile(p, e, nn);
    int nr = 0;
    for (int i = 0; i < nn; i++) {
        int r = 0;
        while (r < nr && (strcmp(rows[r].op, e[i].op) || strcmp(rows[r].backend, e[i].backend))) r++;
        if (r == nr) rows[nr++] = (prof_row){.op = e[i].op, .backend = e[i].backend};
        rows[r].calls += e[i].calls;
        rows[r].ms += e[i].ms;
    }
    qsort(rows, (size_t)nr, sizeof *rows, cmp_row);
    int64_t steps = nn ? e[0].calls : 0;
    double total = 0;
    for (int r = 0; r < nr; r++) total += rows[r].ms;
    if (steps > 0) {
        printf("profile of %s (%" PRId64 " calls, node by node, no graphs): %.1f us per call\n", what, steps,
               total * 1e3 / (double)steps);
        printf("  %8s %8s %6s  %s\n", "us/call", "nodes", "%", "operator");
        for (int r = 0; r < nr && rows[r].ms > 0; r++)
            printf("  %8.1f %8.1f %6.1f  %s (%s)\n", rows[r].ms * 1e3 / (double)steps,
                   (double)rows[r].calls / (double)steps, total > 0 ? 100.0 * rows[r].ms / total : 0.0, rows[r].op,
                   rows[r].backend);
    }
    free(e);
    free(rows);
    return 0;
}

/* Two profiled runs: the --prompt prefill alone, then a decode run
 * profiled from the first sampled token on. */
static int bench_profile(petrel_llm_t *llm, const bench_opts *o, const int32_t *ids) {
    petrel_program_t *p = petrel_llm_program(llm);
    petrel_llm_stats st;
    petrel_llm_gen_params gp = petrel_llm_gen_default_params();
    gp.ignore_eos = true;
    gp.max_new_tokens = 0;
    petrel_status s = petrel_llm_reset(llm);
    if (s == PETREL_OK && (s = petrel_program_set_profiling(p, true)) != PETREL_OK)
        return cli_error("bench: %s", petrel_program_error(p));
    if (s == PETREL_OK) s = petrel_llm_generate(llm, ids, (size_t)o->prompt, &gp, &st);
    if (s != PETREL_OK) return cli_error("bench: %s", petrel_llm_error(llm));
    char what[64];
    snprintf(what, sizeof what, "the %d-token prefill", o->prompt);
    if (print_profile(p, what)) return 1;
    if (petrel_program_set_profiling(p, false) != PETREL_OK) return cli_error("bench: %s", petrel_program_error(p));

    prof_sink sink = {.prog = p, .st = PETREL_OK};
    gp.max_new_tokens = o->gen;
    gp.on_token = prof_token;
    gp.user = &sink;
    if ((s = petrel_llm_reset(llm)) == PETREL_OK) s = petrel_llm_generate(llm, ids, (size_t)o->prompt, &gp, &st);
    int rc = 0;
    if (s != PETREL_OK) rc = cli_error("bench: %s", petrel_llm_error(llm));
    else if (sink.st != PETREL_OK) rc = cli_error("bench: %s", petrel_program_error(p));
    if (!rc) rc = print_profile(p, "the decode steps");
    petrel_status off = petrel_program_set_profiling(p, false);
    if (!rc && off != PETREL_OK) rc = cli_error("bench: %s", petrel_program_error(p));
    return rc;
}

/* ---- output ---------------------------------------------------------------------- */

/* Where the program runs: --backend, else the program's own placement. */
static const char *backend_name(const bench_opts *o, const petrel_program_stats *ps) {
    return o->backend ? o->backend : ps->device ? ps->device : "cpu";
}

/* s as a JSON string literal. */
static void json_str(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static void print_json(const bench_opts *o, const petrel_llm_info *info, const petrel_program_stats *ps,
                       double load_s, const prefill_row *rows, const decode_result *d) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"model\": ");
    json_str(o->model);
    printf(", \"backend\": \"%s\", \"family\": \"%s\", \"vocab_size\": %d, \"max_cache_len\": %d, "
           "\"max_chunk\": %d,\n",
           backend_name(o, ps), info->family_name, info->vocab_size, info->max_cache_len, info->max_chunk);
    printf(" \"weight_bytes\": %" PRId64 ", \"step_weight_bytes\": %" PRId64 ", \"expert_weight_bytes\": %" PRId64
           ", \"state_bytes\": %" PRId64
           ", \"arena_bytes\": %" PRId64
           ", \"device_arena_bytes\": %" PRId64 ", \"nodes\": %" PRId64 ", \"nodes_on_device\": %" PRId64
           ", \"compiled\": %s, \"load_s\": %.4f,\n",
           ps->weight_bytes, ps->step_weight_bytes, ps->expert_weight_bytes, ps->state_bytes, ps->arena_bytes, ps->device_arena_bytes, ps->n_nodes,
           ps->nodes_on_device, ps->compiled ? "true" : "false", load_s);
    printf(" \"prompt\": %d, \"gen\": %d, \"reps\": %d, \"warmup\": %d, \"seed\": %" PRIu64 ",\n", o->prompt,
           o->gen, o->reps, o->warmup, o->seed);
    printf(" \"prefill\": [");
    for (int i = 0; i < o->n_prefill; i++) {
        const prefill_row *r = &rows[i];
        printf("%s{\"tokens\": %d, ", i ? ", " : "", r->tokens);
        if (r->skipped[0]) {
            printf("\"skipped\": ");
            json_str(r->skipped);
        } else {
            printf("\"ms\": %.3f, \"tok_s\": %.2f", r->s * 1e3, r->tokens / r->s);
        }
        putchar('}');
    }
    printf("],\n \"ttft_ms\": %.3f, \"decode_tok_s\": %.3f, \"decode_ms_per_token\": %.4f, \"repeatable\": %s,\n",
           d->ttft_s * 1e3, d->tok_s, d->tok_s > 0 ? 1e3 / d->tok_s : 0.0, d->repeatable ? "true" : "false");
    printf(" \"peak_rss_bytes\": %lld,\n \"tokens\": [", (long long)ru.ru_maxrss * 1024);
    for (int32_t i = 0; i < d->n_tokens; i++) printf("%s%d", i ? ", " : "", d->tokens[i]);
    printf("]}\n");
}

/* Human lines, printed as each measurement finishes (a slow CPU run shows
 * progress). */
static void print_header(const bench_opts *o, const petrel_llm_info *info, const petrel_program_stats *ps,
                         double load_s) {
    printf("model %s: %s, weights %.1f MB, KV cache %d positions, chunks up to %d, loaded in %.2f s; ", o->model,
           info->family_name, (double)ps->weight_bytes / 1e6, info->max_cache_len, info->max_chunk, load_s);
    if (ps->device) printf("%" PRId64 " of %" PRId64 " nodes on %s\n", ps->nodes_on_device, ps->n_nodes, ps->device);
    else printf("all %" PRId64 " nodes on the cpu\n", ps->n_nodes);
    fflush(stdout);
}

static void print_prefill(const bench_opts *o, const prefill_row *r) {
    if (r->skipped[0]) printf("prefill %d tokens: skipped (%s)\n", r->tokens, r->skipped);
    else
        printf("prefill %d tokens: %.1f tok/s (%.2f ms, median of %d)\n", r->tokens, r->tokens / r->s, r->s * 1e3,
               o->reps);
    fflush(stdout);
}

static void print_decode(const bench_opts *o, const decode_result *d) {
    printf("time to first token (%d-token prompt): %.2f ms (median of %d)\n", o->prompt, d->ttft_s * 1e3, o->reps);
    printf("decode: %.2f tok/s (%.3f ms/token, %d greedy tokens after a %d-token prompt, median of %d)%s\n", d->tok_s,
           d->tok_s > 0 ? 1e3 / d->tok_s : 0.0, o->gen, o->prompt, o->reps,
           d->repeatable ? "" : "; WARNING: the runs produced different tokens");
}

/* ---- entry ----------------------------------------------------------------------- */

/* Weight and state bytes of the model and its placement, from an
 * inspect-only load of the program (the LLM session does not expose its
 * program; inspecting takes no device memory). */
static int program_stats(const bench_opts *o, petrel_program_stats *ps) {
    petrel_program_t *p = NULL;
    petrel_load_opts lo = {.backend = o->backend, .inspect_only = true};
    if (petrel_program_load(&p, o->model, &lo) != PETREL_OK) return cli_error("%s", petrel_last_error());
    petrel_program_get_stats(ps, p);
    petrel_program_free(p);
    return 0;
}

/* Whether a one-chunk prefill of n tokens cannot run; if so, why. */
static bool prefill_skip(const petrel_llm_info *info, int32_t n, char *why, size_t cap) {
    if (n > info->max_chunk)
        snprintf(why, cap, "the model takes at most %d tokens per call; export with --max-chunk %d", info->max_chunk, n);
    else if (n > info->max_cache_len)
        snprintf(why, cap, "the KV cache holds %d positions; export with --max-cache-len %d", info->max_cache_len, n);
    else return false;
    return true;
}

/* `petrel bench` entry: returns the exit code (1 with a one-line message on
 * any error). */
int cmd_bench(int argc, char **argv) {
    bench_opts o;
    if (parse_flags(&o, argc, argv)) return 1;
    petrel_program_stats ps;
    if (program_stats(&o, &ps)) return 1;
    petrel_llm_opts lo = petrel_llm_default_opts();
    lo.backend = o.backend;
    lo.threads = o.threads;
    lo.sampling.temperature = 0; /* greedy */
    petrel_llm_t *llm = NULL;
    double t0 = now_s();
    if (petrel_llm_load(&llm, o.model, &lo) != PETREL_OK) return cli_error("%s", petrel_last_error());
    double load_s = now_s() - t0;
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    if ((int64_t)o.prompt + o.gen > info.max_cache_len) {
        petrel_llm_free(llm);
        return cli_error("bench: --prompt %d + --gen %d tokens do not fit in the model's KV cache (%d positions)",
                         o.prompt, o.gen, info.max_cache_len);
    }

    /* one id stream: every prefill length and the prompt are its prefixes */
    int32_t n_ids = o.prompt;
    for (int i = 0; i < o.n_prefill; i++)
        if (o.prefill[i] > n_ids) n_ids = o.prefill[i];
    int32_t *ids = malloc((size_t)n_ids * sizeof *ids);
    if (!ids) {
        petrel_llm_free(llm);
        return cli_error("bench: out of memory");
    }
    uint64_t state = o.seed;
    for (int32_t i = 0; i < n_ids; i++) ids[i] = (int32_t)(splitmix64(&state) % (uint64_t)info.vocab_size);

    prefill_row rows[MAX_PREFILL];
    decode_result d = {0};
    int rc = 0;
    if (!o.json) print_header(&o, &info, &ps, load_s);
    for (int i = 0; !rc && i < o.n_prefill; i++) {
        rows[i] = (prefill_row){.tokens = o.prefill[i]};
        if (!prefill_skip(&info, o.prefill[i], rows[i].skipped, sizeof rows[i].skipped))
            rc = bench_prefill(llm, &o, ids, o.prefill[i], &rows[i].s);
        if (!rc && !o.json) print_prefill(&o, &rows[i]);
    }
    if (!rc) rc = bench_decode(llm, &o, ids, &d);
    if (!rc) {
        if (o.json) print_json(&o, &info, &ps, load_s, rows, &d);
        else print_decode(&o, &d);
        if (o.profile && !o.json) rc = bench_profile(llm, &o, ids);
        if (!rc && (fflush(stdout) != 0 || ferror(stdout))) rc = cli_error("bench: write error on stdout");
    }
    free(d.tokens);
    free(ids);
    petrel_llm_free(llm);
    return rc;
}
