/*
** test_generate.c -- the LLM runner: petrel's greedy generation equals
** Hugging Face's model.generate token for token on the tiny Llama and Qwen3
** fixtures (tests/fixtures/llm, made by tools/fixtures/make_llm_fixtures.py),
** from the .pt2 and from a compiled .petrel; generation split over calls
** and multi-turn chat with the KV cache kept give what one pass over the
** whole text gives; the sampler's filters checked against an independent
** computation (top-k = 1 is greedy, top-p and min-p keep only allowed
** tokens, penalties, reproducible seeds); the KV-cache capacity error;
** streamed text always complete UTF-8; stop strings; chat templates.
** The greedy cases run again on the loopback test device, where the
** runner's greedy loop feeds each step's argmax into the next
** (petrel_program_feed_argmax) and enqueues a step ahead.
*/
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "petrel_llm.h"
#include "runtime/device.h"

#define DIR "tests/fixtures/llm/"
#define MAXN 128

#include "check.h"

/* ---- collecting what generate streams ------------------------------------------- */

typedef struct sink {
    int32_t ids[MAXN];
    int n;
    char text[8192];
    size_t len;
    bool bad_utf8;     /* a text chunk was not complete, valid UTF-8 */
    int stop_after;    /* on_text returns false after this many chunks (0 = never) */
    int chunks;
} sink;

/* Whether s[0..n) is valid, complete UTF-8 (RFC 3629), written here
 * independently of the runner's decoder. */
static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) k = 1, cp = c;
        else if ((c & 0xE0) == 0xC0) k = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) k = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) k = 4, cp = c & 0x07;
        else return false;
        if (i + k > n) return false;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k;
    }
    return true;
}

static bool on_text(const char *text, size_t len, void *user) {
    sink *s = user;
    if (len == 0 || !valid_utf8((const unsigned char *)text, len)) s->bad_utf8 = true;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
    s->chunks++;
    return !(s->stop_after && s->chunks >= s->stop_after);
}

static void on_token(int32_t t, void *user) {
    sink *s = user;
    if (s->n < MAXN) s->ids[s->n++] = t;
}

static petrel_llm_gen_params gen_params(sink *s, int32_t max_new) {
    petrel_llm_gen_params gp = petrel_llm_gen_default_params();
    gp.max_new_tokens = max_new;
    gp.on_text = on_text;
    gp.on_token = on_token;
    gp.user = s;
    return gp;
}

static petrel_sampler_params greedy_params(void) {
    petrel_sampler_params p = petrel_sampler_default_params();
    p.temperature = 0.0f;
    return p;
}

static const char *g_backend; /* NULL: the CPU; "cuda": the loopback device once it is on */

static petrel_llm_t *load(const char *path, const petrel_sampler_params *sp) {
    petrel_llm_opts o = petrel_llm_default_opts();
    o.backend = g_backend;
    if (sp) o.sampling = *sp;
    petrel_llm_t *llm = NULL;
    petrel_status st = petrel_llm_load(&llm, path, &o);
    CHECK(st == PETREL_OK, "load %s: %s", path, petrel_last_error());
    return llm;
}

static size_t json_ids(const json_t *arr, int32_t *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(arr) && n < cap; i++)
        out[n++] = (int32_t)json_integer_value(json_array_get(arr, i));
    return n;
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    printf("  %s:", what);
    for (size_t i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
}

/* ---- greedy generation against Hugging Face ----------------------------------------- */

/* Every reference case of one model file: encode the prompt (must match
 * HF's ids), generate greedily, compare the ids; also split over two calls. */
static void check_model(const char *path, const json_t *model, const char *label) {
    petrel_sampler_params gp0 = greedy_params();
    petrel_llm_t *llm = load(path, &gp0);
    if (!llm) return;
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    CHECK(info.max_cache_len == json_integer_value(json_object_get(model, "max_cache_len")), "%s: cache len", label);
    CHECK(info.max_chunk == json_integer_value(json_object_get(model, "max_chunk")), "%s: max chunk", label);
    int max_new = (int)json_integer_value(json_object_get(model, "max_new_tokens"));
    const json_t *cases = json_object_get(model, "cases");
    for (size_t c = 0; c < json_array_size(cases); c++) {
        const json_t *cs = json_array_get(cases, c);
        const char *prompt = json_string_value(json_object_get(cs, "prompt"));
        int32_t want_prompt[MAXN], want[MAXN];
        size_t n_prompt = json_ids(json_object_get(cs, "prompt_ids"), want_prompt, MAXN);
        size_t n_want = json_ids(json_object_get(cs, "greedy_ids"), want, MAXN);

        int32_t *ids = NULL;
        size_t n = 0;
        petrel_status st = petrel_tokenizer_encode(petrel_llm_tokenizer(llm), prompt, strlen(prompt), true, &ids, &n);
        CHECK(st == PETREL_OK && same_ids(ids, n, want_prompt, n_prompt), "%s case %zu: prompt ids differ", label, c);

        /* one call */
        petrel_llm_reset(llm);
        sink s = {0};
        petrel_llm_gen_params gp = gen_params(&s, max_new);
        petrel_llm_stats stats;
        st = petrel_llm_generate(llm, want_prompt, n_prompt, &gp, &stats);
        CHECK(st == PETREL_OK, "%s case %zu: generate: %s", label, c, petrel_llm_error(llm));
        bool ok = same_ids(s.ids, (size_t)s.n, want, n_want);
        CHECK(ok, "%s case %zu: greedy ids differ from Hugging Face", label, c);
        if (!ok) {
            print_ids("petrel", s.ids, (size_t)s.n);
            print_ids("HF    ", want, n_want);
        }
        CHECK(stats.prompt_tokens == (int)n_prompt && stats.generated_tokens == (int)n_want, "%s: stats counts", label);
        CHECK(stats.prefill_chunks == (int)((n_prompt + (size_t)info.max_chunk - 1) / (size_t)info.max_chunk),
              "%s: %d prefill chunks for %zu tokens", label, stats.prefill_chunks, n_prompt);
        CHECK(stats.position == (int)(n_prompt + n_want - 1), "%s: position %d", label, stats.position);
        CHECK(stats.stop == PETREL_LLM_STOP_LENGTH, "%s: stop %s", label, petrel_llm_stop_str(stats.stop));
        CHECK(!s.bad_utf8, "%s case %zu: streamed text not complete UTF-8", label, c);
        /* the streamed text is the decoded text (special tokens skipped) */
        char *dec = NULL;
        size_t dlen = 0;
        petrel_tokenizer_decode(petrel_llm_tokenizer(llm), want, n_want, true, &dec, &dlen);
        CHECK(dec && dlen == s.len && !memcmp(dec, s.text, dlen), "%s case %zu: streamed text != decode(ids)", label, c);
        free(dec);

        /* the same split over two calls: the pending token is fed first */
        petrel_llm_reset(llm);
        sink s2 = {0};
        gp = gen_params(&s2, max_new / 2);
        st = petrel_llm_generate(llm, want_prompt, n_prompt, &gp, NULL);
        gp.max_new_tokens = max_new - max_new / 2;
        if (st == PETREL_OK) st = petrel_llm_generate(llm, NULL, 0, &gp, NULL);
        CHECK(st == PETREL_OK && same_ids(s2.ids, (size_t)s2.n, want, n_want), "%s case %zu: two calls differ: %s",
              label, c, petrel_llm_error(llm));

        /* top-k = 1 with a temperature is greedy too */
        petrel_sampler_params k1 = petrel_sampler_default_params();
        k1.top_k = 1;
        k1.temperature = 1.5f;
        petrel_llm_set_sampling(llm, &k1);
        petrel_llm_reset(llm);
        sink s3 = {0};
        gp = gen_params(&s3, max_new);
        st = petrel_llm_generate(llm, want_prompt, n_prompt, &gp, NULL);
        CHECK(st == PETREL_OK && same_ids(s3.ids, (size_t)s3.n, want, n_want), "%s case %zu: top-k 1 != greedy", label, c);
        petrel_llm_set_sampling(llm, &gp0);
        free(ids);
    }
    petrel_llm_free(llm);
}

static void test_greedy_vs_hf(void) {
    json_error_t jerr;
    json_t *ref = json_load_file(DIR "reference.json", 0, &jerr);
    CHECK(ref, "reference.json: %s", jerr.text);
    if (!ref) return;
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/petrel_gen_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : P_tmpdir);
    char *tmp = mkdtemp(tmpl);
    const json_t *models = json_object_get(ref, "models");
    CHECK(json_array_size(models) >= 2, "reference.json lists %zu models", json_array_size(models));
    for (size_t i = 0; i < json_array_size(models); i++) {
        const json_t *m = json_array_get(models, i);
        const char *name = json_string_value(json_object_get(m, "name"));
        char path[512], compiled[512], label[128];
        snprintf(path, sizeof path, DIR "%s", json_string_value(json_object_get(m, "file")));
        check_model(path, m, name);
        /* the same from a compiled program file (the extras travel along) */
        if (tmp) {
            snprintf(compiled, sizeof compiled, "%s/%s.petrel", tmp, name);
            petrel_status st = petrel_compile(NULL, path, compiled, NULL);
            CHECK(st == PETREL_OK, "compile %s: %s", path, petrel_last_error());
            snprintf(label, sizeof label, "%s (.petrel)", name);
            if (st == PETREL_OK) check_model(compiled, m, label);
            remove(compiled);
        }
        printf("greedy %s: %zu prompts match Hugging Face (.pt2 and .petrel)\n", name,
               json_array_size(json_object_get(m, "cases")));
    }
    if (tmp) rmdir(tmp);
    json_decref(ref);
}

/* ---- sessions: cache capacity, multi-turn, stop strings, callbacks ------------------ */

static void test_capacity(void) {
    petrel_sampler_params g = greedy_params();
    petrel_llm_t *llm = load(DIR "llama.pt2", &g);
    if (!llm) return;
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    const int L = info.max_cache_len, np = 40;
    int32_t prompt[np];
    for (int i = 0; i < np; i++) prompt[i] = 10 + i;
    sink s = {0};
    /* prompt + new > cache: refused before anything runs */
    petrel_llm_gen_params gp = gen_params(&s, L - np + 1);
    petrel_status st = petrel_llm_generate(llm, prompt, np, &gp, NULL);
    CHECK(st == PETREL_ERR_INVALID_ARG, "over capacity: status %s", petrel_status_str(st));
    CHECK(strstr(petrel_llm_error(llm), "KV cache") != NULL, "capacity message: %s", petrel_llm_error(llm));
    printf("capacity error: %s\n", petrel_llm_error(llm));
    petrel_llm_get_info(&info, llm);
    CHECK(info.position == 0 && s.n == 0, "nothing may run on a refused request");
    /* exactly full */
    gp.max_new_tokens = L - np;
    gp.ignore_eos = true;
    petrel_llm_stats stats;
    st = petrel_llm_generate(llm, prompt, np, &gp, &stats);
    CHECK(st == PETREL_OK && stats.generated_tokens == L - np, "exact fit: %s", petrel_llm_error(llm));
    /* until the cache is full */
    petrel_llm_reset(llm);
    s.n = 0;
    gp.max_new_tokens = -1;
    st = petrel_llm_generate(llm, prompt, np, &gp, &stats);
    CHECK(st == PETREL_OK && stats.stop == PETREL_LLM_STOP_CACHE_FULL && stats.position == L &&
              stats.generated_tokens == L - np + 1,
          "fill the cache: stop %s, position %d, %d tokens", petrel_llm_stop_str(stats.stop), stats.position,
          stats.generated_tokens);
    /* nothing more fits now; a reset makes room */
    st = petrel_llm_generate(llm, prompt, 1, &gp, NULL);
    CHECK(st == PETREL_ERR_INVALID_ARG, "full cache must refuse: %s", petrel_status_str(st));
    CHECK(petrel_llm_reset(llm) == PETREL_OK, "reset");
    st = petrel_llm_generate(llm, prompt, 1, &(petrel_llm_gen_params){.max_new_tokens = 1}, NULL);
    CHECK(st == PETREL_OK, "after reset: %s", petrel_llm_error(llm));
    /* ids outside the vocabulary and empty prompts are refused */
    petrel_llm_reset(llm);
    int32_t bad = 100000;
    CHECK(petrel_llm_generate(llm, &bad, 1, NULL, NULL) == PETREL_ERR_INVALID_ARG, "bad id");
    CHECK(petrel_llm_generate(llm, NULL, 0, NULL, NULL) == PETREL_ERR_INVALID_ARG, "empty prompt");
    petrel_llm_free(llm);
}

/* Multi-turn chat with the cache kept equals one pass over the whole
 * conversation's tokens. */
static void test_chat_turns(const char *path) {
    petrel_sampler_params g = greedy_params();
    petrel_llm_t *llm = load(path, &g);
    if (!llm) return;
    petrel_tokenizer_t *tok = petrel_llm_tokenizer(llm);
    int32_t all[256];
    size_t n_all = 0;
    const char *turns[] = {"Hello there", "And the sea?", "Tell me more"};
    sink last = {0};
    for (int t = 0; t < 3; t++) {
        char *text = NULL;
        size_t len = 0;
        CHECK(petrel_llm_chat_prompt(llm, t == 0 ? "Be brief." : NULL, turns[t], &text, &len) == PETREL_OK, "prompt");
        int32_t *ids = NULL;
        size_t n = 0;
        petrel_tokenizer_encode(tok, text, len, false, &ids, &n);
        free(text);
        petrel_llm_info info;
        petrel_llm_get_info(&info, llm);
        if (info.pending_token >= 0) all[n_all++] = info.pending_token;
        memcpy(all + n_all, ids, n * sizeof *ids);
        n_all += n;
        memset(&last, 0, sizeof last);
        petrel_llm_gen_params gp = gen_params(&last, 4);
        CHECK(petrel_llm_generate(llm, ids, n, &gp, NULL) == PETREL_OK, "turn %d: %s", t, petrel_llm_error(llm));
        free(ids);
        if (t < 2) {
            memcpy(all + n_all, last.ids, (size_t)last.n * sizeof *last.ids);
            n_all += (size_t)last.n - 1; /* the last one stays pending */
        }
    }
    /* one pass: all but the final answer */
    petrel_llm_reset(llm);
    sink one = {0};
    petrel_llm_gen_params gp = gen_params(&one, 4);
    CHECK(petrel_llm_generate(llm, all, n_all, &gp, NULL) == PETREL_OK, "one pass: %s", petrel_llm_error(llm));
    bool ok = same_ids(one.ids, (size_t)one.n, last.ids, (size_t)last.n);
    CHECK(ok, "%s: third answer differs between multi-turn and one pass", path);
    if (ok) printf("chat %s: 3 turns with the cache kept == one pass over %zu tokens\n", path, n_all);
    petrel_llm_free(llm);
}

static void test_stop_and_callbacks(void) {
    petrel_sampler_params g = greedy_params();
    petrel_llm_t *llm = load(DIR "qwen3.pt2", &g);
    if (!llm) return;
    int32_t prompt[] = {49, 80, 69, 71};
    sink full = {0};
    petrel_llm_gen_params gp = gen_params(&full, 30);
    petrel_llm_generate(llm, prompt, 4, &gp, NULL);
    /* a stop string taken from the middle of the text */
    /* three printable ASCII bytes from the second half of the text */
    size_t at = full.len / 2;
    while (at + 3 <= full.len && !(full.text[at] > ' ' && full.text[at] < 127 && full.text[at + 1] > ' ' &&
                                   full.text[at + 1] < 127 && full.text[at + 2] > ' ' && full.text[at + 2] < 127))
        at++;
    CHECK(at + 3 <= full.len, "no ASCII run in the text to use as a stop string");
    if (at + 3 <= full.len) {
        char stop[4];
        memcpy(stop, full.text + at, 3);
        stop[3] = '\0';
        const char *stops[] = {"\xF0\x9F\x98\x80never", stop};
        size_t first = (size_t)(strstr(full.text, stop) - full.text);
        petrel_llm_reset(llm);
        sink s = {0};
        gp = gen_params(&s, 30);
        gp.stop_strings = stops;
        gp.n_stop_strings = 2;
        petrel_llm_stats stats;
        petrel_llm_generate(llm, prompt, 4, &gp, &stats);
        CHECK(stats.stop == PETREL_LLM_STOP_STRING, "stop string: stop %s", petrel_llm_stop_str(stats.stop));
        CHECK(s.len == first && !memcmp(s.text, full.text, first), "stop string: %zu bytes emitted, want %zu", s.len,
              first);
        CHECK(!s.bad_utf8, "stop string: bad UTF-8 chunk");
    }
    /* on_text returning false stops */
    petrel_llm_reset(llm);
    sink s = {.stop_after = 2};
    gp = gen_params(&s, 30);
    petrel_llm_stats stats;
    petrel_llm_generate(llm, prompt, 4, &gp, &stats);
    CHECK(stats.stop == PETREL_LLM_STOP_CALLBACK && s.chunks == 2, "callback stop: %s after %d chunks",
          petrel_llm_stop_str(stats.stop), s.chunks);
    petrel_llm_free(llm);
}

/* Find a prompt whose greedy continuation reaches an end-of-sequence id;
 * generation must stop right there, leaving the id pending, and the next
 * chat turn must not close the answer a second time. */
static void test_eos(void) {
    petrel_sampler_params g = greedy_params();
    petrel_llm_t *llm = load(DIR "llama.pt2", &g);
    if (!llm) return;
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    int found = -1, at = -1;
    for (int32_t first = 5; first < 300 && found < 0; first++) {
        int32_t prompt[2] = {0, first};
        sink s = {0};
        petrel_llm_gen_params gp = gen_params(&s, 100);
        gp.ignore_eos = true;
        petrel_llm_reset(llm);
        petrel_llm_generate(llm, prompt, 2, &gp, NULL);
        for (int i = 0; i < s.n && found < 0; i++)
            for (int e = 0; e < info.n_eos; e++)
                if (s.ids[i] == info.eos_ids[e]) found = first, at = i;
    }
    CHECK(found >= 0, "no greedy continuation reaches an end-of-sequence id");
    if (found >= 0) {
        int32_t prompt[2] = {0, found};
        sink s = {0};
        petrel_llm_gen_params gp = gen_params(&s, 100);
        petrel_llm_stats stats;
        petrel_llm_reset(llm);
        petrel_llm_generate(llm, prompt, 2, &gp, &stats);
        petrel_llm_get_info(&info, llm);
        CHECK(stats.stop == PETREL_LLM_STOP_EOS && s.n == at + 1 && info.last_stop_eos &&
                  info.pending_token == s.ids[at],
              "eos: stop %s after %d tokens (want %d)", petrel_llm_stop_str(stats.stop), s.n, at + 1);
        char *t = NULL;
        petrel_llm_chat_prompt(llm, NULL, "x", &t, NULL);
        CHECK(t && !strncmp(t, "<|start_header_id|>user", 23), "after eos the next turn starts with its header: %s",
              t ? t : "(null)");
        free(t);
        printf("eos: prompt [0 %d] stops at its end-of-sequence id after %d tokens\n", found, at + 1);
    }
    petrel_llm_free(llm);
}

static void test_chat_templates(void) {
    petrel_llm_t *llm = load(DIR "llama.pt2", NULL);
    if (!llm) return;
    char *t = NULL;
    petrel_llm_chat_prompt(llm, "  Be brief. ", "Hi!\n", &t, NULL);
    const char *want = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n";
    CHECK(t && !strcmp(t, want), "llama first turn:\n%s", t ? t : "(null)");
    free(t);
    /* after an answer cut short, the next turn closes it */
    int32_t ids[] = {0, 51, 82};
    petrel_llm_generate(llm, ids, 3, &(petrel_llm_gen_params){.max_new_tokens = 2, .ignore_eos = true}, NULL);
    petrel_llm_chat_prompt(llm, "ignored", "Next", &t, NULL);
    CHECK(t && !strcmp(t, "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nNext<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n"),
          "llama later turn:\n%s", t ? t : "(null)");
    free(t);
    petrel_llm_free(llm);

    llm = load(DIR "qwen3.pt2", NULL);
    if (!llm) return;
    petrel_llm_chat_prompt(llm, NULL, "Hi", &t, NULL);
    CHECK(t && !strcmp(t, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), "qwen3 first turn:\n%s",
          t ? t : "(null)");
    free(t);
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    CHECK(!strcmp(info.family_name, "qwen3") && info.family == PETREL_LLM_FAMILY_QWEN3, "family");
    petrel_llm_free(llm);
}

static void test_load_errors(void) {
    petrel_llm_t *llm = NULL;
    /* an exported program without the LLM extras */
    petrel_status st = petrel_llm_load(&llm, "tests/fixtures/llama_export/model.pt2", NULL);
    CHECK(st == PETREL_ERR_NOT_FOUND && !llm && strstr(petrel_last_error(), "petrel_meta.json"),
          "no meta: %s %s", petrel_status_str(st), petrel_last_error());
    st = petrel_llm_load(&llm, DIR "missing.pt2", NULL);
    CHECK(st != PETREL_OK && !llm, "missing file");
    petrel_llm_opts o = petrel_llm_default_opts();
    o.backend = "cuda";
    st = petrel_llm_load(&llm, DIR "llama.pt2", &o);
    CHECK(st == PETREL_ERR_BACKEND_UNAVAILABLE && !llm, "cuda: %s", petrel_status_str(st));
    o = petrel_llm_default_opts();
    o.sampling.top_p = 0.0f;
    st = petrel_llm_load(&llm, DIR "llama.pt2", &o);
    CHECK(st == PETREL_ERR_INVALID_ARG && !llm, "bad sampling params: %s", petrel_status_str(st));
    petrel_llm_free(NULL);
}

/* ---- the sampler against an independent computation ---------------------------------- */

#define V 64

/* Deterministic test logits (a tiny LCG), spread over about [-4, 4]. */
static void make_logits(float *x, int n, unsigned seed) {
    unsigned s = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 8) % 8001) / 1000.0f - 4.0f;
    }
}

/* allowed[i]: whether token i survives temperature, top-k, top-p, min-p, as
 * Hugging Face's warpers define them. */
static void allowed_set(const float *logits, int n, float temp, int top_k, float top_p, float min_p, bool *allowed) {
    int order[V];
    double p[V];
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 0; i < n; i++) /* selection sort, larger logit first, lower id on ties */
        for (int j = i + 1; j < n; j++)
            if (logits[order[j]] > logits[order[i]] ||
                (logits[order[j]] == logits[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    int keep = top_k > 0 && top_k < n ? top_k : n;
    double sum = 0;
    for (int r = 0; r < keep; r++) sum += p[r] = exp((double)(logits[order[r]] / temp) - (double)(logits[order[0]] / temp));
    if (top_p < 1.0f) {
        double cum = 0;
        int r = 0;
        while (r < keep) {
            cum += p[r] / sum;
            r++;
            if (cum >= top_p) break;
        }
        keep = r;
    }
    for (int i = 0; i < n; i++) allowed[i] = false;
    for (int r = 0; r < keep; r++) allowed[order[r]] = !(min_p > 0 && p[r] < min_p * p[0]);
}

static void check_filter(float temp, int top_k, float top_p, float min_p) {
    float logits[V];
    bool allowed[V];
    for (unsigned trial = 0; trial < 5; trial++) {
        make_logits(logits, V, trial + 1);
        allowed_set(logits, V, temp, top_k, top_p, min_p, allowed);
        petrel_sampler_params p = petrel_sampler_default_params();
        p.temperature = temp;
        p.top_k = top_k;
        p.top_p = top_p;
        p.min_p = min_p;
        p.seed = trial;
        petrel_sampler_t *s = NULL;
        CHECK(petrel_sampler_new(&s, V, &p) == PETREL_OK, "sampler_new");
        if (!s) return;
        int hits[V] = {0}, n_allowed = 0, n_seen = 0, bad = 0;
        for (int i = 0; i < V; i++) n_allowed += allowed[i];
        for (int k = 0; k < 3000; k++) {
            int32_t t = -1;
            petrel_sampler_sample(s, logits, &t);
            if (t < 0 || t >= V || !allowed[t]) bad++;
            else if (hits[t]++ == 0) n_seen++;
        }
        CHECK(bad == 0, "temp %g top-k %d top-p %g min-p %g: %d draws outside the %d allowed tokens", (double)temp,
              top_k, (double)top_p, (double)min_p, bad, n_allowed);
        /* the allowed tokens do get drawn (the likely ones at least) */
        CHECK(n_seen >= (n_allowed < 3 ? n_allowed : 3), "only %d of %d allowed tokens drawn", n_seen, n_allowed);
        petrel_sampler_free(s);
    }
}

static void test_sampler(void) {
    float logits[V];
    petrel_sampler_t *s = NULL, *s2 = NULL;

    /* greedy and top-k 1: argmax, lowest id on ties */
    for (unsigned trial = 0; trial < 20; trial++) {
        make_logits(logits, V, trial + 100);
        if (trial == 0) logits[7] = logits[40] = 9.0f; /* a tie */
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        petrel_sampler_params p = petrel_sampler_default_params();
        p.temperature = 0.0f;
        petrel_sampler_new(&s, V, &p);
        int32_t g = -1, k1 = -1;
        petrel_sampler_sample(s, logits, &g);
        petrel_sampler_free(s);
        p.temperature = 2.0f;
        p.top_k = 1;
        p.seed = trial;
        petrel_sampler_new(&s, V, &p);
        petrel_sampler_sample(s, logits, &k1);
        petrel_sampler_free(s);
        CHECK(g == best && k1 == best, "trial %u: greedy %d, top-k 1 %d, argmax %d", trial, g, k1, best);
    }

    /* filters */
    check_filter(1.0f, 0, 0.9f, 0.0f);
    check_filter(0.7f, 0, 0.5f, 0.0f);
    check_filter(1.0f, 0, 1.0f, 0.2f);
    check_filter(1.3f, 10, 0.8f, 0.05f);
    check_filter(0.8f, 40, 0.95f, 0.05f); /* the defaults */
    check_filter(1.0f, 5, 1.0f, 0.0f);

    /* the same seed gives the same sequence; reset replays it */
    petrel_sampler_params p = petrel_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1234;
    petrel_sampler_new(&s, V, &p);
    petrel_sampler_new(&s2, V, &p);
    int32_t a[200], b[200], c[200];
    int same = 0, distinct = 0;
    bool seen[V] = {false};
    make_logits(logits, V, 7);
    for (int i = 0; i < 200; i++) {
        petrel_sampler_sample(s, logits, &a[i]);
        petrel_sampler_sample(s2, logits, &b[i]);
        same += a[i] == b[i];
        if (!seen[a[i]]) distinct++, seen[a[i]] = true;
    }
    petrel_sampler_reset(s);
    int replay = 0;
    for (int i = 0; i < 200; i++) {
        petrel_sampler_sample(s, logits, &c[i]);
        replay += c[i] == a[i];
    }
    CHECK(same == 200 && replay == 200 && distinct > 10, "seeded: %d same, %d replayed, %d distinct", same, replay,
          distinct);
    printf("sampler seed 1234, first draws: %d %d %d %d %d %d %d %d\n", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    petrel_sampler_free(s2);
    p.seed = 1235;
    petrel_sampler_new(&s2, V, &p);
    same = 0;
    for (int i = 0; i < 200; i++) {
        petrel_sampler_sample(s2, logits, &b[i]);
        same += a[i] == b[i];
    }
    CHECK(same < 100, "another seed gives another sequence (%d of 200 equal)", same);
    petrel_sampler_free(s);
    petrel_sampler_free(s2);

    /* penalties: seen tokens' logits, computed here */
    float x[8] = {2.0f, -1.0f, 1.5f, 0.5f, -3.0f, 1.9f, 0.0f, 1.0f};
    p = petrel_sampler_default_params();
    p.temperature = 0.0f;
    p.repeat_penalty = 1.5f;
    petrel_sampler_new(&s, 8, &p);
    petrel_sampler_accept(s, 0); /* 2.0 / 1.5 = 1.33 < 1.5 (token 2) */
    petrel_sampler_accept(s, 0);
    int32_t t = -1;
    petrel_sampler_sample(s, x, &t);
    CHECK(t == 5, "repeat penalty: got %d, want 5 (1.9)", t);
    petrel_sampler_accept(s, 5); /* 1.9 / 1.5 = 1.27 -> token 2 (1.5) wins */
    petrel_sampler_sample(s, x, &t);
    CHECK(t == 2, "repeat penalty: got %d, want 2", t);
    CHECK(x[0] == 2.0f, "the caller's logits are not modified");
    petrel_sampler_reset(s);
    petrel_sampler_sample(s, x, &t);
    CHECK(t == 0, "reset forgets the history: got %d", t);
    petrel_sampler_free(s);
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.6f;
    p.penalty_last_n = 2;
    petrel_sampler_new(&s, 8, &p);
    petrel_sampler_accept(s, 0); /* 2.0 - 0.6 = 1.4 < 1.9 */
    petrel_sampler_sample(s, x, &t);
    CHECK(t == 5, "presence penalty: got %d", t);
    petrel_sampler_accept(s, 3);
    petrel_sampler_accept(s, 4); /* token 0 has left the 2-token window */
    petrel_sampler_sample(s, x, &t);
    CHECK(t == 0, "penalty window: got %d", t);
    petrel_sampler_free(s);
    /* a negative logit is multiplied */
    float y[3] = {-1.0f, -1.2f, -5.0f};
    p = petrel_sampler_default_params();
    p.temperature = 0.0f;
    p.repeat_penalty = 1.5f;
    p.penalty_last_n = 0;
    petrel_sampler_new(&s, 3, &p);
    petrel_sampler_accept(s, 0); /* -1.5 < -1.2 */
    petrel_sampler_sample(s, y, &t);
    CHECK(t == 1, "negative logit penalty: got %d", t);
    petrel_sampler_free(s);

    /* bad parameters */
    p = petrel_sampler_default_params();
    p.top_p = 1.5f;
    CHECK(petrel_sampler_new(&s, 8, &p) == PETREL_ERR_INVALID_ARG && !s, "top_p 1.5");
    p = petrel_sampler_default_params();
    p.min_p = -0.1f;
    CHECK(petrel_sampler_new(&s, 8, &p) == PETREL_ERR_INVALID_ARG, "min_p < 0");
    p = petrel_sampler_default_params();
    p.repeat_penalty = 0.0f;
    CHECK(petrel_sampler_new(&s, 8, &p) == PETREL_ERR_INVALID_ARG, "repeat_penalty 0");
    p = petrel_sampler_default_params();
    p.temperature = NAN;
    CHECK(petrel_sampler_new(&s, 8, &p) == PETREL_ERR_INVALID_ARG, "temperature NaN");
    CHECK(petrel_sampler_new(&s, 0, NULL) == PETREL_ERR_INVALID_ARG, "n_vocab 0");
    float nan3[3] = {NAN, NAN, NAN};
    petrel_sampler_new(&s, 3, NULL);
    CHECK(petrel_sampler_sample(s, nan3, &t) == PETREL_ERR_INVALID_ARG, "all-NaN logits");
    petrel_sampler_free(s);
    petrel_sampler_free(NULL);
}

/* Sampled generation on a model is reproducible from the seed. */
static void test_seeded_generation(void) {
    petrel_sampler_params p = petrel_sampler_default_params();
    p.temperature = 1.0f;
    p.seed = 42;
    petrel_llm_t *llm = load(DIR "llama.pt2", &p);
    if (!llm) return;
    int32_t prompt[] = {0, 51, 82, 71};
    sink a = {0}, b = {0};
    petrel_llm_gen_params gp = gen_params(&a, 16);
    gp.ignore_eos = true;
    petrel_llm_generate(llm, prompt, 4, &gp, NULL);
    petrel_llm_reset(llm);
    gp.user = &b;
    petrel_llm_generate(llm, prompt, 4, &gp, NULL);
    CHECK(a.n == 16 && same_ids(a.ids, (size_t)a.n, b.ids, (size_t)b.n), "seeded generation differs after reset");
    petrel_llm_free(llm);
}

int main(void) {
    test_greedy_vs_hf();
    test_capacity();
    test_chat_turns(DIR "llama.pt2");
    test_chat_turns(DIR "qwen3.pt2");
    test_stop_and_callbacks();
    test_eos();
    test_chat_templates();
    test_load_errors();
    test_sampler();
    test_seeded_generation();
    /* the greedy loop that feeds itself, on a device */
    pt_device_use_loopback();
    g_backend = "cuda";
    printf("again on the loopback device:\n");
    test_greedy_vs_hf();
    test_chat_turns(DIR "llama.pt2");
    test_chat_turns(DIR "qwen3.pt2");
    test_stop_and_callbacks();
    test_eos();
    if (failures) {
        printf("%d failure(s)\n", failures);
        return 1;
    }
    printf("all generate tests passed\n");
    return 0;
}
