/*
** test_tokenizer.c -- the tokenizer.json tokenizer against real files:
** every llama.cpp reference case for Llama 3.1 (llama-bpe), Qwen3 (qwen2)
** and Gemma 3 (gemma-4), encoded without the post-processor as the
** vectors were made; decode(encode(x)) == x on the same texts; the
** template tokens; synthetic tokenizers that exercise the components the
** real files do not use (expectations made by Hugging Face tokenizers,
** see tests/data/tokenizers/make_synthetic.py); malformed files and
** failing allocations giving statuses, not crashes; and the encode speed
** on 1 MB of text.
*/
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "petrel_tokenizer.h"

#define DATA "tests/data/tokenizers/"

#include "check.h"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    printf("  %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) printf(" %d", ids[i]);
    printf(n > 40 ? " ...\n" : "\n");
}

/* ---- llama.cpp reference vectors ------------------------------------------------ */

/* The .inp file holds each text followed by "\n__ggml_vocab_test__\n" (the
 * newline before the marker is part of the separator, not of the text); a
 * last text may follow the final marker without one.  The .out file has
 * one line of space-separated ids per text. */
static int split_inputs(char *inp, size_t len, char **texts, size_t *lens, int max) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int n = 0;
    char *p = inp, *end = inp + len;
    while (p < end && n < max) {
        char *hit = memmem(p, (size_t)(end - p), sep, sizeof sep - 1);
        texts[n] = p;
        lens[n] = hit ? (size_t)(hit - p) : (size_t)(end - p);
        n++;
        if (!hit) break;
        p = hit + sizeof sep - 1;
    }
    return n;
}

static void test_reference(const char *tokenizer, const char *vocab, int expect_cases) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s", tokenizer);
    petrel_tokenizer_t *tok = NULL;
    double t0 = now();
    petrel_status st = petrel_tokenizer_load(&tok, path);
    double t_load = now() - t0;
    CHECK(st == PETREL_OK, "load %s: %s", path, petrel_last_error());
    if (st != PETREL_OK) return;

    size_t inp_len, out_len;
    snprintf(path, sizeof path, DATA "ggml-vocab-%s.gguf.inp", vocab);
    char *inp = read_all(path, &inp_len);
    snprintf(path, sizeof path, DATA "ggml-vocab-%s.gguf.out", vocab);
    char *out = read_all(path, &out_len);
    CHECK(inp && out, "cannot read the %s reference files", vocab);
    if (!inp || !out) {
        free(inp);
        free(out);
        petrel_tokenizer_free(tok);
        return;
    }
    char *texts[128];
    size_t lens[128];
    int n = split_inputs(inp, inp_len, texts, lens, 128);
    CHECK(n == expect_cases, "%s: %d texts, expected %d", vocab, n, expect_cases);

    int pass = 0, round_trip = 0;
    char *line = out;
    for (int i = 0; i < n; i++) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = '\0';
        int32_t want[1024];
        size_t nwant = 0;
        for (char *q = line, *e; nwant < 1024; q = e) {
            long v = strtol(q, &e, 10);
            if (e == q) break;
            want[nwant++] = (int32_t)v;
        }
        line = eol ? eol + 1 : line + strlen(line);

        int32_t *ids = NULL;
        size_t nids = 0;
        st = petrel_tokenizer_encode(tok, texts[i], lens[i], false, &ids, &nids);
        bool ok = st == PETREL_OK && nids == nwant && (nids == 0 || !memcmp(ids, want, nids * sizeof *ids));
        if (ok) {
            pass++;
        } else {
            failures++;
            printf("FAIL %s case %d (\"%.*s\"): %s\n", vocab, i, (int)(lens[i] > 60 ? 60 : lens[i]), texts[i],
                   st == PETREL_OK ? "ids differ" : petrel_tokenizer_error(tok));
            print_ids("want", want, nwant);
            print_ids("got ", ids, nids);
        }
        char *text = NULL;
        size_t tlen = 0;
        st = petrel_tokenizer_decode(tok, ids, nids, false, &text, &tlen);
        if (st == PETREL_OK && tlen == lens[i] && !memcmp(text, texts[i], tlen))
            round_trip++;
        else
            CHECK(0, "%s case %d: decode(encode(x)) = \"%.*s\"", vocab, i, (int)(tlen > 60 ? 60 : tlen),
                  text ? text : "");
        free(text);
        free(ids);
    }
    printf("%-26s %-10s %2d/%d reference cases, %2d/%d round trips (load %.2f s)\n", tokenizer, vocab, pass,
           n, round_trip, n, t_load);
    free(inp);
    free(out);
    petrel_tokenizer_free(tok);
}

/* ---- behaviour of the real tokenizers beyond the vectors ------------------------ */

static void expect_ids(petrel_tokenizer_t *tok, const char *text, bool add_special, const int32_t *want,
                       size_t nwant, const char *what) {
    int32_t *ids = NULL;
    size_t n = 0;
    petrel_status st = petrel_tokenizer_encode(tok, text, strlen(text), add_special, &ids, &n);
    bool ok = st == PETREL_OK && n == nwant && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
    CHECK(ok, "%s: encode(\"%s\") wrong", what, text);
    if (!ok) {
        print_ids("want", want, nwant);
        print_ids("got ", ids, n);
    }
    free(ids);
}

static void test_specials(void) {
    petrel_tokenizer_t *llama = NULL, *qwen = NULL, *gemma = NULL;
    CHECK(petrel_tokenizer_load(&llama, DATA "llama3_1.tokenizer.json.gz") == PETREL_OK, "load llama");
    CHECK(petrel_tokenizer_load(&qwen, DATA "qwen3.tokenizer.json.gz") == PETREL_OK, "load qwen");
    CHECK(petrel_tokenizer_load(&gemma, DATA "gemma3.tokenizer.json.gz") == PETREL_OK, "load gemma");
    if (!llama || !qwen || !gemma) goto done;

    /* expectations from Hugging Face tokenizers 0.23 */
    expect_ids(llama, "Hello world", true, (const int32_t[]){128000, 9906, 1917}, 3, "llama BOS");
    expect_ids(llama, "", true, (const int32_t[]){128000}, 1, "llama empty");
    expect_ids(llama, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", false,
               (const int32_t[]){128006, 882, 128007, 271, 13347, 128009}, 6, "llama chat");
    expect_ids(qwen, "Hello world", true, (const int32_t[]){9707, 1879}, 2, "qwen no BOS");
    expect_ids(qwen, "<|im_start|>user\nhi<|im_end|><think>", true,
               (const int32_t[]){151644, 872, 198, 6023, 151645, 151667}, 6, "qwen chat");
    expect_ids(gemma, "Hello world", true, (const int32_t[]){2, 9259, 1902}, 3, "gemma BOS");
    expect_ids(gemma, "<start_of_turn>user\n\n\nhi  there<end_of_turn>", false,
               (const int32_t[]){105, 2364, 109, 2202, 138, 13534, 106}, 7, "gemma chat");

    CHECK(petrel_tokenizer_vocab_size(llama) == 128256, "llama vocab %d", petrel_tokenizer_vocab_size(llama));
    CHECK(petrel_tokenizer_vocab_size(qwen) == 151669, "qwen vocab %d", petrel_tokenizer_vocab_size(qwen));
    CHECK(petrel_tokenizer_vocab_size(gemma) == 262145, "gemma vocab %d", petrel_tokenizer_vocab_size(gemma));
    CHECK(petrel_tokenizer_bos_id(llama) == 128000 && petrel_tokenizer_eos_id(llama) == 128001,
          "llama bos/eos");
    CHECK(petrel_tokenizer_bos_id(qwen) == -1 && petrel_tokenizer_eos_id(qwen) == 151643, "qwen bos/eos");
    CHECK(petrel_tokenizer_bos_id(gemma) == 2 && petrel_tokenizer_eos_id(gemma) == 1, "gemma bos/eos");
    CHECK(petrel_tokenizer_token_id(llama, "<|eot_id|>") == 128009, "llama <|eot_id|>");
    CHECK(petrel_tokenizer_token_id(qwen, "<|im_end|>") == 151645, "qwen <|im_end|>");
    CHECK(petrel_tokenizer_is_special(qwen, 151645) && !petrel_tokenizer_is_special(qwen, 151667) &&
              !petrel_tokenizer_is_special(qwen, 9707),
          "qwen special flags");
    const char *s = petrel_tokenizer_id_to_token(llama, 1917);
    CHECK(s && !strcmp(s, "\xc4\xa0world"), "llama id_to_token(1917) = %s", s ? s : "(null)");
    CHECK(petrel_tokenizer_id_to_token(llama, 1 << 30) == NULL, "id_to_token out of range");

    /* pieces for streaming: byte-level bytes, <0xNN> bytes, metaspace */
    char buf[64];
    size_t n = 0;
    CHECK(petrel_tokenizer_token_to_piece(llama, 1917, buf, sizeof buf, &n) == PETREL_OK && n == 6 &&
              !memcmp(buf, " world", 6),
          "llama piece 1917");
    CHECK(petrel_tokenizer_token_to_piece(llama, 11410, buf, sizeof buf, &n) == PETREL_OK && n == 3 &&
              !memcmp(buf, " \xf0\x9f", 3),
          "llama piece of half an emoji");
    int32_t e2 = petrel_tokenizer_token_id(gemma, "<0xE2>");
    CHECK(e2 >= 0 && petrel_tokenizer_token_to_piece(gemma, e2, buf, sizeof buf, &n) == PETREL_OK && n == 1 &&
              (unsigned char)buf[0] == 0xe2,
          "gemma piece <0xE2>");
    CHECK(petrel_tokenizer_token_to_piece(gemma, 1902, buf, sizeof buf, &n) == PETREL_OK && n == 6 &&
              !memcmp(buf, " world", 6),
          "gemma piece 1902");
    CHECK(petrel_tokenizer_token_to_piece(gemma, 1902, buf, 2, &n) == PETREL_ERR_INVALID_ARG && n == 6,
          "small piece buffer");

    /* decode: special tokens skipped by default, bad UTF-8 becomes U+FFFD */
    char *text = NULL;
    size_t len = 0;
    const int32_t chat[] = {128000, 9906, 128009};
    CHECK(petrel_tokenizer_decode(llama, chat, 3, true, &text, &len) == PETREL_OK && !strcmp(text, "Hello"),
          "decode skip special: %s", text ? text : "");
    free(text);
    CHECK(petrel_tokenizer_decode(llama, chat, 3, false, &text, &len) == PETREL_OK &&
              !strcmp(text, "<|begin_of_text|>Hello<|eot_id|>"),
          "decode keep special: %s", text ? text : "");
    free(text);
    const int32_t half[] = {9906, 11410};
    CHECK(petrel_tokenizer_decode(llama, half, 2, true, &text, &len) == PETREL_OK &&
              !strcmp(text, "Hello \xef\xbf\xbd"),
          "decode half emoji: %s", text ? text : "");
    free(text);
    const int32_t gbytes[] = {e2, 9259};
    CHECK(petrel_tokenizer_decode(gemma, gbytes, 2, true, &text, &len) == PETREL_OK &&
              !strcmp(text, "\xef\xbf\xbdHello"),
          "gemma lone byte: %s", text ? text : "");
    free(text);

    /* invalid UTF-8 input is an argument error */
    int32_t *ids = NULL;
    CHECK(petrel_tokenizer_encode(qwen, "a\xff", 2, true, &ids, &n) == PETREL_ERR_INVALID_ARG && !ids &&
              n == 0,
          "invalid UTF-8 accepted");
    CHECK(strstr(petrel_tokenizer_error(qwen), "UTF-8") != NULL, "message: %s", petrel_tokenizer_error(qwen));
done:
    petrel_tokenizer_free(llama);
    petrel_tokenizer_free(qwen);
    petrel_tokenizer_free(gemma);
}

/* ---- synthetic tokenizers: components the real files do not use ----------------- */

static void test_synthetic(const char *name) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s.json", name);
    petrel_tokenizer_t *tok = NULL;
    petrel_status st = petrel_tokenizer_load(&tok, path);
    CHECK(st == PETREL_OK, "load %s: %s", path, petrel_last_error());
    snprintf(path, sizeof path, DATA "%s.expected.json", name);
    json_error_t jerr;
    json_t *cases = json_load_file(path, 0, &jerr);
    CHECK(json_is_array(cases), "%s: %s", path, jerr.text);
    if (!tok || !json_is_array(cases)) {
        json_decref(cases);
        petrel_tokenizer_free(tok);
        return;
    }
    size_t i;
    json_t *c;
    int pass = 0;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t tlen = json_string_length(json_object_get(c, "text"));
        bool ok = true;
        for (int special = 0; special < 2; special++) {
            json_t *want = json_object_get(c, special ? "ids" : "ids_plain");
            int32_t *ids = NULL;
            size_t n = 0;
            st = petrel_tokenizer_encode(tok, text, tlen, special, &ids, &n);
            bool same = st == PETREL_OK && n == json_array_size(want);
            for (size_t k = 0; same && k < n; k++)
                same = ids[k] == json_integer_value(json_array_get(want, k));
            CHECK(same, "%s: encode(\"%s\", add_special=%d)", name, text, special);
            if (!same) print_ids("got", ids, n);
            ok = ok && same;
            /* decode what add_special_tokens=True gave, both ways */
            for (int skip = 0; special && same && skip < 2; skip++) {
                json_t *dw = json_object_get(c, skip ? "decoded" : "decoded_keep");
                char *out = NULL;
                size_t olen = 0;
                st = petrel_tokenizer_decode(tok, ids, n, skip, &out, &olen);
                bool dsame = st == PETREL_OK && olen == json_string_length(dw) &&
                             !memcmp(out, json_string_value(dw), olen);
                CHECK(dsame, "%s: decode(encode(\"%s\"), skip_special=%d) = \"%s\"", name, text, skip,
                      out ? out : "");
                ok = ok && dsame;
                free(out);
            }
            free(ids);
        }
        pass += ok;
    }
    printf("%-26s %2d/%zu cases\n", name, pass, json_array_size(cases));
    json_decref(cases);
    petrel_tokenizer_free(tok);
}

/* ---- malformed files --------------------------------------------------------------- */

static void test_malformed(void) {
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "null",
        "{\"model\": 3}",
        "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -4}, \"merges\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a\"]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": 7}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
        "\"Isolated\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": "
        "\"Sideways\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": "
        "\"Precompiled\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": "
        "\"CTC\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"decoder\": {\"type\": \"Strip\", \"content\": \"ab\", \"start\": 1, \"stop\": 0}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": "
        "1}]}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": {}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": "
        "\"<s>\"}}],"
        " \"special_tokens\": {}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"post_processor\": "
        "{\"type\": \"Weird\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"dropout\": 0.1}}",
        "\x1f\x8b\x08\x00garbage",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        petrel_tokenizer_t *tok = (petrel_tokenizer_t *)&failures; /* must be reset to NULL */
        petrel_status st = petrel_tokenizer_load_memory(&tok, bad[i], strlen(bad[i]));
        CHECK(st != PETREL_OK && tok == NULL, "malformed file %zu accepted", i);
        CHECK(petrel_last_error()[0] != '\0', "malformed file %zu: no message", i);
    }
    /* a truncated gzip file, and a missing one */
    size_t len;
    char *gz = read_all(DATA "qwen3.tokenizer.json.gz", &len);
    if (gz) {
        petrel_tokenizer_t *tok = NULL;
        CHECK(petrel_tokenizer_load_memory(&tok, gz, len / 2) == PETREL_ERR_FORMAT && !tok,
              "truncated gzip: %s", petrel_last_error());
        free(gz);
    }
    petrel_tokenizer_t *tok = NULL;
    CHECK(petrel_tokenizer_load(&tok, DATA "no-such-tokenizer.json") == PETREL_ERR_NOT_FOUND && !tok,
          "missing file");
    CHECK(petrel_tokenizer_encode(NULL, "a", 1, true, NULL, NULL) == PETREL_ERR_INVALID_ARG,
          "NULL tokenizer");
    petrel_tokenizer_free(NULL);
}

/* Every allocation of load + encode + decode failing in turn must give
 * PETREL_ERR_NOMEM or, where the allocation was optional (the word cache),
 * the same result as without failures -- never a crash or a wrong answer. */
static bool run_once(const char *json, size_t len, const char *text, int32_t **ids, size_t *n, char **out,
                     petrel_status *st) {
    petrel_tokenizer_t *tok = NULL;
    *ids = NULL;
    *out = NULL;
    *n = 0;
    *st = petrel_tokenizer_load_memory(&tok, json, len);
    if (*st == PETREL_OK) *st = petrel_tokenizer_encode(tok, text, strlen(text), true, ids, n);
    if (*st == PETREL_OK) *st = petrel_tokenizer_decode(tok, *ids, *n, true, out, NULL);
    petrel_tokenizer_free(tok);
    return *st == PETREL_OK;
}

static void test_failing_alloc(void) {
    size_t len;
    char *json = read_all(DATA "synthetic-metaspace.json", &len);
    CHECK(json != NULL, "synthetic-metaspace.json missing");
    if (!json) return;
    const char *text = "Hello 12 w\xc3\xb6rld [MASK] hello \xe2\x82\xac\xe4\xbd\xa0 ``x''";
    int32_t *want_ids, *ids;
    size_t want_n, n;
    char *want_out, *out;
    petrel_status st;
    CHECK(run_once(json, len, text, &want_ids, &want_n, &want_out, &st), "clean run: %s",
          petrel_status_str(st));
    int nomem = 0, absorbed = 0;
    for (int64_t k = 1; want_out && k < 100000; k++) {
        pt_alloc_fail_at(k);
        bool ok = run_once(json, len, text, &ids, &n, &out, &st);
        int64_t made = pt_alloc_fail_at(0);
        if (ok) {
            CHECK(n == want_n && !memcmp(ids, want_ids, n * sizeof *ids) && !strcmp(out, want_out),
                  "allocation %lld failed silently with a different result", (long long)k);
            absorbed += made >= k;
        } else {
            CHECK(st == PETREL_ERR_NOMEM, "allocation %lld failed: %s", (long long)k, petrel_status_str(st));
            nomem++;
        }
        free(ids);
        free(out);
        if (made < k) break; /* every allocation has had its turn */
    }
    printf("failing allocator: %d failures reported as NOMEM, %d absorbed by the cache\n", nomem, absorbed);
    free(want_ids);
    free(want_out);
    free(json);
}

/* ---- speed ------------------------------------------------------------------------------- */

static void test_speed(const char *tokenizer) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s", tokenizer);
    petrel_tokenizer_t *tok = NULL;
    if (petrel_tokenizer_load(&tok, path) != PETREL_OK) return;
    /* 1 MiB of mixed text: the reference inputs repeated */
    size_t inp_len;
    char *inp = read_all(DATA "ggml-vocab-llama-bpe.gguf.inp", &inp_len);
    size_t want = 1 << 20, n = 0;
    char *text = malloc(want + inp_len);
    while (inp && text && n < want) {
        memcpy(text + n, inp, inp_len);
        n += inp_len;
    }
    if (text && inp) {
        int32_t *ids = NULL;
        size_t nids = 0;
        double t0 = now();
        petrel_status st = petrel_tokenizer_encode(tok, text, n, true, &ids, &nids);
        double dt = now() - t0;
        CHECK(st == PETREL_OK, "encode 1 MiB: %s", petrel_tokenizer_error(tok));
        /* a generous bound (sanitizer builds included): catches quadratic
         * behaviour, not small regressions */
        CHECK(dt < 5.0, "encoding 1 MiB took %.2f s", dt);
        char *back = NULL;
        size_t blen = 0;
        double t1 = now();
        st = petrel_tokenizer_decode(tok, ids, nids, true, &back, &blen);
        double dt2 = now() - t1;
        CHECK(st == PETREL_OK && blen == n && !memcmp(back, text, n), "1 MiB round trip");
        printf("%-26s encode %.2f MiB -> %zu ids in %.3f s, decode %.3f s\n", tokenizer,
               (double)n / (1 << 20), nids, dt, dt2);
        free(back);
        free(ids);
    }
    free(text);
    free(inp);
    petrel_tokenizer_free(tok);
}

int main(void) {
    test_reference("llama3_1.tokenizer.json.gz", "llama-bpe", 46);
    test_reference("qwen3.tokenizer.json.gz", "qwen2", 46);
    test_reference("gemma3.tokenizer.json.gz", "gemma-4", 46);
    test_specials();
    test_synthetic("synthetic-metaspace");
    test_synthetic("synthetic-bytelevel");
    test_malformed();
    test_failing_alloc();
    test_speed("llama3_1.tokenizer.json.gz");
    test_speed("qwen3.tokenizer.json.gz");
    test_speed("gemma3.tokenizer.json.gz");
    if (failures) {
        printf("%d failure(s)\n", failures);
        return 1;
    }
    printf("all tokenizer tests passed\n");
    return 0;
}
