/*
** llm_flags.c -- the flags `petrel generate` and `petrel chat` share: the
** model, the backend, the token limit and the sampling parameters, each
** checked against its range (a bad value is a one-line error).
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

void cli_llm_flags_init(cli_llm_flags *f) {
    memset(f, 0, sizeof *f);
    f->backend = NULL; /* the program's own placement */
    f->sampling = petrel_sampler_default_params();
    f->max_new = -1;
}

static bool parse_i64(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_f(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* finite as a float too: 1e39 would become inf */
    if (end == s || *end || errno || !(fabs(v) <= FLT_MAX)) return false;
    *out = (float)v;
    return true;
}

bool cli_parse_threads(const char *v, int32_t *out) {
    long long n;
    if (!parse_i64(v, 0, 64, &n)) return false;
    *out = (int32_t)n;
    return true;
}

int cli_llm_flag(cli_llm_flags *f, const char *verb, int argc, char **argv, int *i) {
    static const char *const with_value[] = {
        "-m", "--model", "-n", "--max-tokens", "--temp", "--top-k", "--top-p", "--min-p",
        "--repeat-penalty", "--presence-penalty", "--repeat-last-n", "--seed", "--backend", "--threads",
    };
    const char *a = argv[*i];
    bool known = false;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) known |= !strcmp(a, with_value[k]);
    if (!known) return 0;
    if (*i + 1 >= argc) return -cli_error("%s: %s needs a value", verb, a);
    const char *v = argv[++*i];
    petrel_sampler_params *sp = &f->sampling;
    long long n;
    float x;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        f->model = v;
    } else if (!strcmp(a, "--backend")) {
        if (strcmp(v, "cpu") && strcmp(v, "cuda"))
            return -cli_error("%s: --backend must be cpu or cuda, not '%s'", verb, v);
        f->backend = v;
    } else if (!strcmp(a, "--threads")) {
        if (!cli_parse_threads(v, &f->threads))
            return -cli_error("%s: --threads must be an integer from 0 (one per CPU) to 64, not '%s'", verb, v);
    } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
        if (!parse_i64(v, -1, INT32_MAX, &n))
            return -cli_error("%s: %s must be an integer >= -1 (-1: until the end of the text), not '%s'", verb, a, v);
        f->max_new = (int32_t)n;
    } else if (!strcmp(a, "--top-k")) {
        if (!parse_i64(v, 0, INT32_MAX, &n)) return -cli_error("%s: --top-k must be an integer >= 0, not '%s'", verb, v);
        sp->top_k = (int32_t)n;
    } else if (!strcmp(a, "--repeat-last-n")) {
        if (!parse_i64(v, 0, INT32_MAX, &n))
            return -cli_error("%s: --repeat-last-n must be an integer >= 0, not '%s'", verb, v);
        sp->penalty_last_n = (int32_t)n;
    } else if (!strcmp(a, "--seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (end == v || *end || errno || v[0] == '-')
            return -cli_error("%s: --seed must be an integer >= 0, not '%s'", verb, v);
        sp->seed = (uint64_t)s;
        f->seed_given = true;
    } else if (!parse_f(v, &x)) {
        return -cli_error("%s: %s must be a number, not '%s'", verb, a, v);
    } else if (!strcmp(a, "--temp")) {
        if (x < 0) return -cli_error("%s: --temp must be >= 0 (0: greedy), not %s", verb, v);
        sp->temperature = x;
    } else if (!strcmp(a, "--top-p")) {
        if (!(x > 0 && x <= 1)) return -cli_error("%s: --top-p must be in (0, 1], not %s", verb, v);
        sp->top_p = x;
    } else if (!strcmp(a, "--min-p")) {
        if (!(x >= 0 && x <= 1)) return -cli_error("%s: --min-p must be in [0, 1], not %s", verb, v);
        sp->min_p = x;
    } else if (!strcmp(a, "--repeat-penalty")) {
        if (!(x > 0)) return -cli_error("%s: --repeat-penalty must be > 0 (1: off), not %s", verb, v);
        sp->repeat_penalty = x;
    } else { /* --presence-penalty */
        sp->presence_penalty = x;
    }
    return 1;
}

/* A seed from the clock and the process id, for runs without --seed. */
static uint64_t fresh_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40);
}

int cli_llm_load(petrel_llm_t **llm, cli_llm_flags *f, const char *verb) {
    if (!f->model) return cli_error("%s: -m MODEL is required (see 'petrel help')", verb);
    if (!f->seed_given) f->sampling.seed = fresh_seed();
    petrel_llm_opts o = petrel_llm_default_opts();
    o.backend = f->backend;
    o.sampling = f->sampling;
    o.threads = f->threads;
    if (petrel_llm_load(llm, f->model, &o) != PETREL_OK) return cli_error("%s", petrel_last_error());
    return 0;
}
