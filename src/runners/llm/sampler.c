/*
** sampler.c -- petrel_sampler_*: pick the next token from a row of logits.
** Part of the LLM runner (src/runners/llm), above the public API; see
** include/petrel_llm.h for the parameters and the order of the steps.
**
** The RNG is xorshift64* (S. Vigna, "An experimental exploration of
** Marsaglia's xorshift generators, scrambled", 2016) seeded through one
** splitmix64 step, so a seed gives the same stream on every machine; a
** draw takes the top 53 bits as a double in [0, 1).  Probabilities are
** computed in double from float logits.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/core.h"
#include "petrel_llm.h"

/* One candidate token while filtering. */
typedef struct cand {
    int32_t id;
    float logit;  /* after penalties and temperature */
    double p;     /* unnormalised probability, exp(logit - max) */
} cand;

struct petrel_sampler {
    petrel_sampler_params params;
    int32_t n_vocab;
    uint64_t rng;        /* xorshift64* state, never 0 */
    /* accepted tokens: a ring of penalty_last_n entries, or (penalty_last_n
     * == 0) a growing array of all of them */
    int32_t *hist;
    size_t n_hist, cap_hist, next;
    uint32_t *seen;      /* (n_vocab) stamp of the last sample that penalised the token */
    uint32_t stamp;
    float *work;         /* (n_vocab) logits after penalties */
    cand *cands;         /* (n_vocab) */
};

/* ---- RNG ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void rng_seed(petrel_sampler_t *s) {
    s->rng = splitmix64(s->params.seed);
    if (s->rng == 0) s->rng = 0x9E3779B97F4A7C15ull; /* xorshift must not start at 0 */
}

static uint64_t rng_next(petrel_sampler_t *s) {
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(petrel_sampler_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ---- lifetime -------------------------------------------------------------------- */

petrel_sampler_params petrel_sampler_default_params(void) {
    petrel_sampler_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .presence_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = 0,
    };
    return p;
}

/* Reject parameters outside their documented ranges (NaN included). */
static petrel_status check_params(const petrel_sampler_params *p) {
    if (isnan(p->temperature))
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: temperature is NaN");
    if (p->top_k < 0) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: top_k %d < 0", (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: top_p %g not in (0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: min_p %g not in [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: repeat_penalty %g must be > 0",
                       (double)p->repeat_penalty);
    if (!isfinite(p->presence_penalty))
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: presence_penalty is not finite");
    if (p->penalty_last_n < 0)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: penalty_last_n %d < 0",
                       (int)p->penalty_last_n);
    return PETREL_OK;
}

petrel_status petrel_sampler_new(petrel_sampler_t **out, int32_t n_vocab,
                                 const petrel_sampler_params *params) {
    if (!out) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_sampler_new: NULL out");
    *out = NULL;
    if (n_vocab <= 0) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: n_vocab %d <= 0", (int)n_vocab);
    petrel_sampler_params p = params ? *params : petrel_sampler_default_params();
    PT_TRY(check_params(&p));
    petrel_sampler_t *s = pt_calloc(1, sizeof *s);
    if (!s) return pt_fail(NULL, PETREL_ERR_NOMEM, "sampler: out of memory");
    s->params = p;
    s->n_vocab = n_vocab;
    s->cap_hist = p.penalty_last_n > 0 ? (size_t)p.penalty_last_n : 256;
    s->hist = pt_malloc(s->cap_hist * sizeof *s->hist);
    s->seen = pt_calloc((size_t)n_vocab, sizeof *s->seen);
    s->work = pt_malloc((size_t)n_vocab * sizeof *s->work);
    s->cands = pt_malloc((size_t)n_vocab * sizeof *s->cands);
    if (!s->hist || !s->seen || !s->work || !s->cands) {
        petrel_sampler_free(s);
        return pt_fail(NULL, PETREL_ERR_NOMEM, "sampler: out of memory for %d logits", (int)n_vocab);
    }
    rng_seed(s);
    *out = s;
    return PETREL_OK;
}

void petrel_sampler_free(petrel_sampler_t *s) {
    if (!s) return;
    pt_free(s->hist);
    pt_free(s->seen);
    pt_free(s->work);
    pt_free(s->cands);
    pt_free(s);
}

petrel_sampler_params petrel_sampler_get_params(const petrel_sampler_t *s) {
    return s ? s->params : petrel_sampler_default_params();
}

void petrel_sampler_reset(petrel_sampler_t *s) {
    if (!s) return;
    s->n_hist = s->next = 0;
    rng_seed(s);
}

petrel_status petrel_sampler_accept(petrel_sampler_t *s, int32_t token) {
    if (!s) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_sampler_accept: NULL sampler");
    if (token < 0 || token >= s->n_vocab) return PETREL_OK;
    if (s->params.penalty_last_n > 0) { /* ring: the oldest entry is overwritten */
        s->hist[s->next] = token;
        s->next = (s->next + 1) % s->cap_hist;
        if (s->n_hist < s->cap_hist) s->n_hist++;
        return PETREL_OK;
    }
    if (s->n_hist == s->cap_hist) {
        int32_t *h = pt_realloc(s->hist, 2 * s->cap_hist * sizeof *h);
        if (!h) return pt_fail(NULL, PETREL_ERR_NOMEM, "sampler: out of memory for the token history");
        s->hist = h;
        s->cap_hist *= 2;
    }
    s->hist[s->n_hist++] = token;
    return PETREL_OK;
}

/* ---- the steps ------------------------------------------------------------------- */

/* Repetition and presence penalties, once per distinct token of the
 * window, on s->work. */
static void apply_penalties(petrel_sampler_t *s) {
    const float rep = s->params.repeat_penalty, pres = s->params.presence_penalty;
    if ((rep == 1.0f && pres == 0.0f) || s->n_hist == 0) return;
    if (++s->stamp == 0) { /* wrapped: old stamps could collide */
        memset(s->seen, 0, (size_t)s->n_vocab * sizeof *s->seen);
        s->stamp = 1;
    }
    for (size_t i = 0; i < s->n_hist; i++) {
        int32_t t = s->hist[i];
        if (s->seen[t] == s->stamp) continue;
        s->seen[t] = s->stamp;
        float l = s->work[t];
        l = l < 0.0f ? l * rep : l / rep;
        s->work[t] = l - pres;
    }
}

/* Lowest id with the largest logit; -1 when all are NaN. */
static int32_t argmax(const float *x, int32_t n) {
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return best;
}

/* Candidate order: larger logit first, then lower id (a total order, so
 * ties resolve the same way as argmax). */
static bool before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static int cmp_id(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

/* Restore the heap property below position i of a heap whose root is the
 * candidate that comes last in `before` order. */
static void sift_down(cand *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && before(&h[m], &h[l])) m = l;
        if (r < n && before(&h[m], &h[r])) m = r;
        if (m == i) return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Move the k first candidates (in `before` order) of c[0..n) to c[0..k),
 * sorted: a heap of the best k seen so far, its worst at the root. */
static void keep_top_k(cand *c, size_t n, size_t k) {
    for (size_t i = k / 2; i-- > 0;) sift_down(c, k, i);
    for (size_t i = k; i < n; i++) {
        if (before(&c[i], &c[0])) {
            c[0] = c[i];
            sift_down(c, k, 0);
        }
    }
    qsort(c, k, sizeof *c, cmp_cand);
}

/* Keep the smallest most-likely prefix whose probability reaches top_p.
 * Sorting all candidates is avoided as in llama2.c: a token with
 * probability below (1 - top_p) / (n - 1) cannot be in the nucleus, since
 * all such tokens together hold less than 1 - top_p. */
static size_t keep_top_p(cand *c, size_t n, bool sorted, double sum, double top_p) {
    if (!sorted) {
        double cutoff = n > 1 ? (1.0 - top_p) / (double)(n - 1) * sum : 0.0;
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].p >= cutoff) c[m++] = c[i];
        n = m;
        qsort(c, n, sizeof *c, cmp_cand);
    }
    double cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].p / sum;
        if (cum >= top_p) return i + 1;
    }
    return n;
}

static petrel_status draw(petrel_sampler_t *s, cand *c, size_t n, bool sorted, int32_t *token);

petrel_status petrel_sampler_sample(petrel_sampler_t *s, const float *logits, int32_t *token) {
    if (!s || !logits || !token) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_sampler_sample: NULL argument");
    const petrel_sampler_params *pp = &s->params;
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *s->work);
    apply_penalties(s);

    if (pp->temperature <= 0.0f) {
        int32_t t = argmax(s->work, s->n_vocab);
        if (t < 0) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: every logit is NaN");
        *token = t;
        return PETREL_OK;
    }

    /* temperature */
    size_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (!isnan(s->work[i])) s->cands[n++] = (cand){i, s->work[i] / pp->temperature, 0.0};
    if (n == 0) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "sampler: every logit is NaN");
    cand *c = s->cands;

    /* top-k */
    bool sorted = false;
    if (pp->top_k > 0 && (size_t)pp->top_k < n) {
        keep_top_k(c, n, (size_t)pp->top_k);
        n = (size_t)pp->top_k;
        sorted = true;
    }
    return draw(s, c, n, sorted, token);
}

bool petrel_sampler_takes_top(const petrel_sampler_t *s) {
    const petrel_sampler_params *pp = s ? &s->params : NULL;
    return pp && pp->temperature > 0.0f && pp->top_k > 0 && pp->top_k < PETREL_TOPK_MAX &&
           pp->repeat_penalty == 1.0f && pp->presence_penalty == 0.0f;
}

petrel_status petrel_sampler_sample_top(petrel_sampler_t *s, const int32_t *ids, const float *values, int32_t n,
                                        int32_t *token) {
    if (!s || !ids || !values || !token)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_sampler_sample_top: NULL argument");
    if (!petrel_sampler_takes_top(s))
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG,
                       "petrel_sampler_sample_top: the sampler's parameters need the whole row of logits");
    int32_t k = s->params.top_k;
    if (n < 1 || n > k + 1)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_sampler_sample_top: %d candidates for top_k %d", (int)n,
                       (int)k);
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab || isnan(values[i]) ||
            (i > 0 && !before(&(cand){ids[i - 1], values[i - 1], 0.0}, &(cand){ids[i], values[i], 0.0})))
            return pt_fail(NULL, PETREL_ERR_INVALID_ARG,
                           "petrel_sampler_sample_top: candidate %d is out of range or out of order", (int)i);
        s->cands[i] = (cand){ids[i], values[i], 0.0};
    }
    if (n > k) return draw(s, s->cands, (size_t)k, true, token);
    /* the row has only n <= top_k numbers: the whole row, which the full
     * path keeps in id order */
    qsort(s->cands, (size_t)n, sizeof *s->cands, cmp_id);
    return draw(s, s->cands, (size_t)n, false, token);
}

/* The steps after top-k over the candidates c[0 .. n) (sorted: in `before`
 * order), then the draw. */
static petrel_status draw(petrel_sampler_t *s, cand *c, size_t n, bool sorted, int32_t *token) {
    const petrel_sampler_params *pp = &s->params;

    /* softmax (unnormalised; the sum is kept) */
    float mx = c[0].logit;
    for (size_t i = 1; i < n; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    if (isinf(mx) && mx < 0) mx = 0.0f; /* all -inf: a uniform draw below */
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += c[i].p = exp((double)c[i].logit - (double)mx);

    /* top-p */
    if (pp->top_p < 1.0f && n > 1 && sum > 0.0) {
        n = keep_top_p(c, n, sorted, sum, (double)pp->top_p);
        sorted = true;
    }

    /* min-p, relative to the most likely token left */
    if (pp->min_p > 0.0f && n > 1) {
        double pmax = 0.0;
        for (size_t i = 0; i < n; i++)
            if (c[i].p > pmax) pmax = c[i].p;
        double floor_p = (double)pp->min_p * pmax;
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].p >= floor_p) c[m++] = c[i];
        n = m;
    }

    /* draw */
    double total = 0.0;
    for (size_t i = 0; i < n; i++) total += c[i].p;
    double r = rng_uniform(s);
    if (!(total > 0.0)) { /* every probability underflowed: uniform over what is left */
        *token = c[(size_t)(r * (double)n)].id;
        return PETREL_OK;
    }
    r *= total;
    double cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (r < cum) {
            *token = c[i].id;
            return PETREL_OK;
        }
    }
    *token = c[n - 1].id; /* rounding left r at the very end */
    return PETREL_OK;
}
