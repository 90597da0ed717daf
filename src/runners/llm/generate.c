/*
** generate.c -- petrel_llm_*: a text-generation session over an exported
** LM program (see include/petrel_llm.h).  Part of the LLM runner: it drives
** the program only through the public API (petrel.h, petrel_tokenizer.h)
** and uses core for error messages and allocation, like the tokenizer.
**
** The program maps (input_ids [1, T], cache_position [T]) to logits
** [1, T, vocab] and keeps the KV cache in its mutable buffers.  A session is
** llama2.c's generate loop: feed the prompt (in chunks), then repeatedly
** sample a token from the last position's logits and feed it back.
**
** Greedy decoding feeds itself where the program runs
** (petrel_program_feed_argmax): each step's argmax becomes the next step's
** input on the device, so the step after is enqueued before the host
** reads this step's token, and the device does not wait for the host
** between tokens.  When a token then ends the generation (EOS, a stop
** string, the caller), the step enqueued for it has written its cache row
** at the position in use, past what the session counts: the next call's
** first chunk writes that row again, and no step reads a row before
** writing it.
*/
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "../../core/core.h"
#include "petrel_llm.h"

struct petrel_llm {
    petrel_program_t *prog;
    petrel_tokenizer_t *tok;
    petrel_sampler_t *sampler;
    pt_err err;

    /* from petrel_meta.json */
    petrel_llm_family family;
    int32_t vocab_size, max_cache_len, max_chunk, bos_id, pad_id;
    int32_t *eos_ids;
    int32_t n_eos;
    char *chat_template;      /* NULL when the exporter found none */

    int in_ids, in_pos;       /* program input indices of input_ids, cache_position */

    /* conversation state */
    int32_t pos;              /* KV-cache positions in use */
    int32_t pending;          /* sampled, not fed yet; -1 if none */
    bool last_stop_eos;

    /* scratch, sized at load */
    int64_t *chunk_ids;       /* (max_chunk) */
    int64_t *chunk_pos;       /* (max_chunk) */
    float *logits;            /* (vocab_size) the last position's logits */
    bool greedy;              /* this generate call samples by plain argmax: */
    int32_t argmax;           /* ... then forward leaves only the argmax here */
    bool no_feed;             /* greedy steps do not feed their argmax (fed_step): all on the CPU */
    bool top;                 /* or from the top_k + 1 best candidates (petrel_sampler_takes_top): */
    int32_t top_ids[PETREL_TOPK_MAX], top_n; /* ... then forward leaves only them here */
    float top_vals[PETREL_TOPK_MAX];

    /* streamed text not emitted yet, and the buffer it is emitted from */
    char *held;
    size_t n_held, cap_held;
    char *out;
    size_t cap_out;
};

static const char *const family_names[PETREL_LLM_FAMILY_COUNT] = {
    [PETREL_LLM_FAMILY_LLAMA] = "llama",
    [PETREL_LLM_FAMILY_QWEN3] = "qwen3",
    [PETREL_LLM_FAMILY_QWEN3_MOE] = "qwen3_moe",
    [PETREL_LLM_FAMILY_GEMMA3] = "gemma3",
    [PETREL_LLM_FAMILY_PHI3] = "phi3",
};
_Static_assert(sizeof family_names / sizeof family_names[0] == PETREL_LLM_FAMILY_COUNT, "family names");

static const char *const stop_names[PETREL_LLM_STOP_COUNT] = {
    [PETREL_LLM_STOP_EOS] = "eos",
    [PETREL_LLM_STOP_STRING] = "stop string",
    [PETREL_LLM_STOP_LENGTH] = "length",
    [PETREL_LLM_STOP_CACHE_FULL] = "cache full",
    [PETREL_LLM_STOP_CALLBACK] = "stopped by caller",
};
_Static_assert(sizeof stop_names / sizeof stop_names[0] == PETREL_LLM_STOP_COUNT, "stop names");

const char *petrel_llm_stop_str(petrel_llm_stop s) {
    return (unsigned)s < PETREL_LLM_STOP_COUNT ? stop_names[s] : "?";
}

/* Seconds on a monotonic clock. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Grow *buf to hold at least `need` bytes (doubling). */
static bool reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    char *b = pt_realloc(*buf, c);
    if (!b) return false;
    *buf = b;
    *cap = c;
    return true;
}

/* ---- loading --------------------------------------------------------------------- */

petrel_llm_opts petrel_llm_default_opts(void) {
    petrel_llm_opts o = {.backend = NULL, .sampling = petrel_sampler_default_params()};
    return o;
}

/* An integer member of the meta object; `def` when absent (min is checked). */
static petrel_status meta_int(const json_t *meta, const char *key, bool required, int64_t def, int64_t min,
                              int64_t max, int32_t *out) {
    const json_t *v = json_object_get(meta, key);
    if (!v) {
        if (required) return pt_fail(NULL, PETREL_ERR_FORMAT, "petrel_meta.json: missing \"%s\"", key);
        *out = (int32_t)def;
        return PETREL_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return pt_fail(NULL, PETREL_ERR_FORMAT, "petrel_meta.json: \"%s\" must be an integer in [%lld, %lld]",
                       key, (long long)min, (long long)max);
    *out = (int32_t)json_integer_value(v);
    return PETREL_OK;
}

/* Read petrel_meta.json (see python/petrel_export.py) into the session. */
static petrel_status parse_meta(petrel_llm_t *llm, const void *data, size_t size) {
    json_error_t jerr;
    json_t *meta = json_loadb(data, size, 0, &jerr);
    if (!meta || !json_is_object(meta)) {
        json_decref(meta);
        return pt_fail(NULL, PETREL_ERR_FORMAT, "petrel_meta.json: not a JSON object (%s)", jerr.text);
    }
    petrel_status st = PETREL_OK;
    const char *family = json_string_value(json_object_get(meta, "family"));
    if (!family) {
        st = pt_fail(NULL, PETREL_ERR_FORMAT, "petrel_meta.json: missing \"family\"");
        goto done;
    }
    int f = 0;
    while (f < PETREL_LLM_FAMILY_COUNT && strcmp(family_names[f], family)) f++;
    if (f == PETREL_LLM_FAMILY_COUNT) {
        st = pt_fail(NULL, PETREL_ERR_UNSUPPORTED,
                     "petrel_meta.json: unknown family '%s' (have llama, qwen3, qwen3_moe, gemma3, phi3)", family);
        goto done;
    }
    llm->family = (petrel_llm_family)f;
    if ((st = meta_int(meta, "vocab_size", true, 0, 1, INT32_MAX, &llm->vocab_size)) ||
        (st = meta_int(meta, "max_cache_len", true, 0, 1, INT32_MAX, &llm->max_cache_len)) ||
        (st = meta_int(meta, "max_chunk", true, 0, 1, INT32_MAX, &llm->max_chunk)) ||
        (st = meta_int(meta, "bos_id", false, -1, -1, INT32_MAX, &llm->bos_id)) ||
        (st = meta_int(meta, "pad_id", false, -1, -1, INT32_MAX, &llm->pad_id)))
        goto done;
    const json_t *eos = json_object_get(meta, "eos_ids");
    if (!json_is_array(eos)) {
        st = pt_fail(NULL, PETREL_ERR_FORMAT, "petrel_meta.json: \"eos_ids\" must be a list of token ids");
        goto done;
    }
    llm->eos_ids = pt_malloc((json_array_size(eos) + 1) * sizeof *llm->eos_ids);
    if (!llm->eos_ids) {
        st = pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < json_array_size(eos); i++) {
        const json_t *v = json_array_get(eos, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
            st = pt_fail(NULL, PETREL_ERR_FORMAT, "petrel_meta.json: eos_ids[%zu] is not a token id", i);
            goto done;
        }
        llm->eos_ids[llm->n_eos++] = (int32_t)json_integer_value(v);
    }
    const char *tmpl = json_string_value(json_object_get(meta, "chat_template"));
    if (tmpl && !(llm->chat_template = pt_strdup(tmpl))) st = pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
done:
    json_decref(meta);
    return st;
}

/* Find the program's input_ids / cache_position inputs and logits output,
 * and settle the chunk size: the meta's, capped by the inputs' max size. */
static petrel_status check_program(petrel_llm_t *llm, const char *path) {
    petrel_program_t *p = llm->prog;
    llm->in_ids = petrel_program_find_input(p, "input_ids");
    llm->in_pos = petrel_program_find_input(p, "cache_position");
    petrel_io_info ids, pos, out;
    if (llm->in_ids < 0 || llm->in_pos < 0 || petrel_program_num_inputs(p) != 2 ||
        petrel_program_num_outputs(p) < 1)
        return pt_fail(NULL, PETREL_ERR_UNSUPPORTED,
                       "%s: not an exported LM (expected inputs input_ids and cache_position, "
                       "and logits out; export with python/petrel_export.py)", path);
    petrel_program_input_info(&ids, p, llm->in_ids);
    petrel_program_input_info(&pos, p, llm->in_pos);
    petrel_program_output_info(&out, p, 0);
    if (ids.kind != PETREL_VALUE_TENSOR || ids.rank != 2 || ids.dtype != PETREL_DTYPE_I64 ||
        pos.kind != PETREL_VALUE_TENSOR || pos.rank != 1 || pos.dtype != PETREL_DTYPE_I64)
        return pt_fail(NULL, PETREL_ERR_UNSUPPORTED,
                       "%s: input_ids must be int64 [1, T] and cache_position int64 [T]", path);
    if (out.kind != PETREL_VALUE_TENSOR || out.rank != 3 || !pt_dtype_is_float(out.dtype))
        return pt_fail(NULL, PETREL_ERR_UNSUPPORTED, "%s: output 0 must be floating-point logits [1, T, vocab]",
                       path);
    if (out.shape[2] != llm->vocab_size)
        return pt_fail(NULL, PETREL_ERR_FORMAT, "%s: logits have %lld entries per position, petrel_meta.json says %d",
                       path, (long long)out.shape[2], (int)llm->vocab_size);
    int64_t max_t = ids.shape[1] >= 0 ? ids.shape[1] : ids.max_shape[1];
    if (ids.shape[1] > 1)
        return pt_fail(NULL, PETREL_ERR_UNSUPPORTED,
                       "%s: the program takes exactly %lld tokens per call; export with a dynamic length",
                       path, (long long)ids.shape[1]);
    if (max_t > 0 && max_t < llm->max_chunk) llm->max_chunk = (int32_t)max_t;
    return PETREL_OK;
}

petrel_status petrel_llm_load(petrel_llm_t **out, const char *path, const petrel_llm_opts *opts) {
    if (!out || !path) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_llm_load: NULL argument");
    *out = NULL;
    petrel_llm_opts o = opts ? *opts : petrel_llm_default_opts();
    petrel_llm_t *llm = pt_calloc(1, sizeof *llm);
    if (!llm) return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    llm->pending = -1;
    petrel_load_opts lo = {.backend = o.backend, .threads = o.threads};
    petrel_status st = petrel_program_load(&llm->prog, path, &lo);
    const void *data;
    size_t size;
    if (st == PETREL_OK && petrel_program_extra(&data, &size, llm->prog, "petrel_meta.json") != PETREL_OK)
        st = pt_fail(NULL, PETREL_ERR_NOT_FOUND,
                     "%s carries no petrel_meta.json (export the model with python/petrel_export.py)", path);
    if (st == PETREL_OK) st = parse_meta(llm, data, size);
    if (st == PETREL_OK && petrel_program_extra(&data, &size, llm->prog, "tokenizer.json") != PETREL_OK)
        st = pt_fail(NULL, PETREL_ERR_NOT_FOUND,
                     "%s carries no tokenizer.json (export with petrel_export.py --tokenizer FILE)", path);
    if (st == PETREL_OK) st = petrel_tokenizer_load_memory(&llm->tok, data, size);
    if (st == PETREL_OK) { /* feeding pays where a device runs the steps: the host then does not wait */
        petrel_program_stats ps;
        petrel_program_get_stats(&ps, llm->prog);
        llm->no_feed = !ps.device;
    }
    if (st == PETREL_OK) st = check_program(llm, path);
    if (st == PETREL_OK) st = petrel_sampler_new(&llm->sampler, llm->vocab_size, &o.sampling);
    if (st == PETREL_OK) {
        llm->chunk_ids = pt_malloc((size_t)llm->max_chunk * sizeof *llm->chunk_ids);
        llm->chunk_pos = pt_malloc((size_t)llm->max_chunk * sizeof *llm->chunk_pos);
        llm->logits = pt_malloc((size_t)llm->vocab_size * sizeof *llm->logits);
        if (!llm->chunk_ids || !llm->chunk_pos || !llm->logits) st = pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    }
    if (st != PETREL_OK) {
        petrel_llm_free(llm);
        return st;
    }
    *out = llm;
    return PETREL_OK;
}

void petrel_llm_free(petrel_llm_t *llm) {
    if (!llm) return;
    petrel_program_free(llm->prog);
    petrel_tokenizer_free(llm->tok);
    petrel_sampler_free(llm->sampler);
    pt_free(llm->eos_ids);
    pt_free(llm->chat_template);
    pt_free(llm->chunk_ids);
    pt_free(llm->chunk_pos);
    pt_free(llm->logits);
    pt_free(llm->held);
    pt_free(llm->out);
    pt_free(llm);
}

const char *petrel_llm_error(const petrel_llm_t *llm) { return llm ? llm->err.msg : "NULL session"; }

petrel_status petrel_llm_get_info(petrel_llm_info *out, const petrel_llm_t *llm) {
    if (!out || !llm) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_llm_get_info: NULL argument");
    *out = (petrel_llm_info){
        .family = llm->family,
        .family_name = family_names[llm->family],
        .vocab_size = llm->vocab_size,
        .max_cache_len = llm->max_cache_len,
        .max_chunk = llm->max_chunk,
        .bos_id = llm->bos_id,
        .pad_id = llm->pad_id,
        .eos_ids = llm->eos_ids,
        .n_eos = llm->n_eos,
        .chat_template = llm->chat_template,
        .position = llm->pos,
        .pending_token = llm->pending,
        .last_stop_eos = llm->last_stop_eos,
    };
    return PETREL_OK;
}

petrel_tokenizer_t *petrel_llm_tokenizer(petrel_llm_t *llm) { return llm ? llm->tok : NULL; }
petrel_sampler_t *petrel_llm_sampler(petrel_llm_t *llm) { return llm ? llm->sampler : NULL; }
petrel_program_t *petrel_llm_program(petrel_llm_t *llm) { return llm ? llm->prog : NULL; }

petrel_status petrel_llm_set_sampling(petrel_llm_t *llm, const petrel_sampler_params *params) {
    if (!llm) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_llm_set_sampling: NULL session");
    petrel_sampler_t *s = NULL;
    petrel_status st = petrel_sampler_new(&s, llm->vocab_size, params);
    if (st != PETREL_OK) return pt_fail(&llm->err, st, "%s", petrel_last_error());
    petrel_sampler_free(llm->sampler);
    llm->sampler = s;
    return PETREL_OK;
}

petrel_status petrel_llm_reset(petrel_llm_t *llm) {
    if (!llm) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_llm_reset: NULL session");
    petrel_status st = petrel_program_reset_state(llm->prog);
    if (st != PETREL_OK) return pt_fail(&llm->err, st, "%s", petrel_program_error(llm->prog));
    llm->pos = 0;
    llm->pending = -1;
    llm->last_stop_eos = false;
    llm->n_held = 0;
    petrel_sampler_reset(llm->sampler);
    return PETREL_OK;
}

/* ---- running the program --------------------------------------------------------- */

/* Run the program on n tokens at the current position and keep the last
 * position's logits in llm->logits (as float), or only their argmax in
 * llm->argmax when this call samples greedily, or only the sampler's
 * candidates (llm->top). */
static petrel_status forward(petrel_llm_t *llm, const int64_t *ids, int32_t n) {
    for (int32_t i = 0; i < n; i++) llm->chunk_pos[i] = llm->pos + i;
    petrel_program_hint_position(llm->prog, llm->pos + n - 1);
    petrel_tensor_desc in_ids = {.dtype = PETREL_DTYPE_I64, .rank = 2, .shape = {1, n}, .data = (void *)ids};
    petrel_tensor_desc in_pos = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {n}, .data = llm->chunk_pos};
    petrel_status st;
    if ((st = petrel_program_set_input(llm->prog, llm->in_ids, &in_ids)) != PETREL_OK ||
        (st = petrel_program_set_input(llm->prog, llm->in_pos, &in_pos)) != PETREL_OK ||
        (st = petrel_program_execute(llm->prog)) != PETREL_OK)
        return pt_fail(&llm->err, st, "%s", petrel_program_error(llm->prog));
    if (llm->greedy) {
        /* the last row's argmax, computed where the logits are: a device
         * result never crosses (the output's shape was checked at load) */
        int64_t t;
        if ((st = petrel_program_output_argmax(llm->prog, 0, -1, &t)) != PETREL_OK)
            return pt_fail(&llm->err, st, "%s", petrel_program_error(llm->prog));
        if (t < 0) return pt_fail(&llm->err, PETREL_ERR_INVALID_ARG, "sampler: every logit is NaN");
        llm->argmax = (int32_t)t;
        llm->pos += n;
        return PETREL_OK;
    }
    if (llm->top) {
        petrel_sampler_params sp = petrel_sampler_get_params(llm->sampler);
        if ((st = petrel_program_output_topk(llm->prog, 0, -1, sp.top_k + 1, sp.temperature, llm->top_ids,
                                             llm->top_vals, &llm->top_n)) != PETREL_OK)
            return pt_fail(&llm->err, st, "%s", petrel_program_error(llm->prog));
        if (llm->top_n == 0) return pt_fail(&llm->err, PETREL_ERR_INVALID_ARG, "sampler: every logit is NaN");
        llm->pos += n;
        return PETREL_OK;
    }
    petrel_tensor_desc out;
    petrel_value_kind kind;
    if ((st = petrel_program_get_output(&out, llm->prog, 0, &kind)) != PETREL_OK)
        return pt_fail(&llm->err, st, "%s", petrel_program_error(llm->prog));
    /* logits (1, n, vocab), or (1, 1, vocab) from a program that keeps only
     * the last position: take the last row */
    if (out.rank != 3 || (out.shape[1] != n && out.shape[1] != 1) || out.shape[2] != llm->vocab_size)
        return pt_fail(&llm->err, PETREL_ERR_RUNTIME, "logits came out with an unexpected shape");
    size_t esz = petrel_dtype_size(out.dtype);
    const char *row = (const char *)out.data + (size_t)(out.shape[1] - 1) * (size_t)llm->vocab_size * esz;
    for (int32_t v = 0; v < llm->vocab_size; v++) {
        const void *x = row + (size_t)v * esz;
        llm->logits[v] = out.dtype == PETREL_DTYPE_F32 ? *(const float *)x : (float)pt_load_f64(x, out.dtype);
    }
    llm->pos += n;
    return PETREL_OK;
}

/* Enqueue one greedy decode step whose argmax the program feeds into the
 * next (petrel_program_feed_argmax): for `token` at position llm->pos, or
 * (token < 0) for the token the step before feeds.  `pos` is the step's
 * position, for the program's hint (petrel_program_hint_position).
 * (Where a host step reads the inputs, the program computes the index at
 * once and sets them on the host: the same results, the host waiting.) */
static petrel_status fed_step(petrel_llm_t *llm, int64_t token, int64_t pos) {
    petrel_status st = PETREL_OK;
    petrel_program_hint_position(llm->prog, pos);
    if (token >= 0) {
        llm->chunk_pos[0] = llm->pos;
        petrel_tensor_desc in_ids = {.dtype = PETREL_DTYPE_I64, .rank = 2, .shape = {1, 1}, .data = &token};
        petrel_tensor_desc in_pos = {.dtype = PETREL_DTYPE_I64, .rank = 1, .shape = {1}, .data = llm->chunk_pos};
        if ((st = petrel_program_set_input(llm->prog, llm->in_ids, &in_ids)) != PETREL_OK ||
            (st = petrel_program_set_input(llm->prog, llm->in_pos, &in_pos)) != PETREL_OK)
            return pt_fail(&llm->err, st, "%s", petrel_program_error(llm->prog));
    }
    if ((st = petrel_program_execute(llm->prog)) != PETREL_OK ||
        (st = petrel_program_feed_argmax(llm->prog, 0, -1, llm->in_ids, llm->in_pos)) != PETREL_OK)
        return pt_fail(&llm->err, st, "%s", petrel_program_error(llm->prog));
    return PETREL_OK;
}

/* Feed the token sequence [pending?] + ids[0..n) in chunks of at most
 * max_chunk tokens. */
static petrel_status prefill(petrel_llm_t *llm, const int32_t *ids, size_t n, petrel_llm_stats *stats) {
    size_t total = n + (llm->pending >= 0), done = 0;
    while (done < total) {
        int32_t c = (int32_t)(total - done < (size_t)llm->max_chunk ? total - done : (size_t)llm->max_chunk);
        for (int32_t i = 0; i < c; i++) {
            size_t k = done + (size_t)i;
            llm->chunk_ids[i] = llm->pending >= 0 ? (k == 0 ? llm->pending : ids[k - 1]) : ids[k];
        }
        PT_TRY(forward(llm, llm->chunk_ids, c));
        done += (size_t)c;
        stats->prefill_chunks++;
    }
    stats->prompt_tokens = (int32_t)total;
    llm->pending = -1;
    return PETREL_OK;
}

/* ---- streaming text -------------------------------------------------------------- */

/* Classify the UTF-8 sequence at p (avail bytes there): 1 = a complete,
 * valid character of *len bytes; 0 = invalid, *len bytes (its longest
 * valid-looking start, at least 1) to replace by one U+FFFD; -1 = a valid
 * start that the next bytes may complete. */
static int utf8_seq(const unsigned char *p, size_t avail, size_t *len) {
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    *len = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;        /* no overlong forms */
    else if (c == 0xED) n = 3, hi = 0x9F;        /* no surrogates */
    else if (c >= 0xE1 && c <= 0xEF) n = 3;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c == 0xF4) n = 4, hi = 0x8F;        /* nothing above U+10FFFF */
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if (i >= avail) return -1;
        unsigned b = p[i];
        if (b < (i == 1 ? lo : 0x80u) || b > (i == 1 ? hi : 0xBFu)) {
            *len = i;
            return 0;
        }
    }
    *len = n;
    return 1;
}

/* Bytes of held text that can be emitted now: all of it but a character
 * the next token may still complete. */
static size_t utf8_complete(const char *s, size_t n) {
    size_t i = 0, len;
    while (i < n) {
        if (utf8_seq((const unsigned char *)s + i, n - i, &len) < 0) return i;
        i += len;
    }
    return n;
}

/* Pass n held bytes to on_text as valid UTF-8 (invalid bytes, and at the
 * end an unfinished character, become U+FFFD) and drop them from the held
 * text.  False when the callback asks to stop. */
static bool emit(petrel_llm_t *llm, size_t n, const petrel_llm_gen_params *gp, petrel_status *st) {
    if (n == 0) return true;
    bool go_on = true;
    if (gp->on_text) {
        if (!reserve(&llm->out, &llm->cap_out, 3 * n)) {
            *st = pt_fail(&llm->err, PETREL_ERR_NOMEM, "out of memory");
            return false;
        }
        size_t i = 0, m = 0, len;
        while (i < n) {
            const unsigned char *p = (const unsigned char *)llm->held + i;
            int kind = utf8_seq(p, n - i, &len);
            if (kind == 1) {
                memcpy(llm->out + m, p, len);
                m += len;
            } else {
                if (kind < 0) len = n - i; /* unfinished at the very end */
                memcpy(llm->out + m, "\xEF\xBF\xBD", 3);
                m += 3;
            }
            i += len;
        }
        go_on = gp->on_text(llm->out, m, gp->user);
    }
    memmove(llm->held, llm->held + n, llm->n_held - n);
    llm->n_held -= n;
    return go_on;
}

/* Add a token's text to the held text and emit what is certain: text that
 * cannot be the start of a stop string nor half a character.  Sets *stop
 * when a stop string appeared (the text before it is emitted) or the
 * callback asked to stop. */
static petrel_status push_text(petrel_llm_t *llm, int32_t token, const petrel_llm_gen_params *gp,
                               petrel_llm_stop *stop, bool *stopped) {
    petrel_status st = PETREL_OK;
    if (!gp->emit_special && petrel_tokenizer_is_special(llm->tok, token)) return PETREL_OK;
    size_t len = 0;
    petrel_tokenizer_token_to_piece(llm->tok, token, NULL, 0, &len);
    if (len == 0) return PETREL_OK; /* unknown id (vocab padding) or an empty piece */
    if (!reserve(&llm->held, &llm->cap_held, llm->n_held + len))
        return pt_fail(&llm->err, PETREL_ERR_NOMEM, "out of memory");
    petrel_tokenizer_token_to_piece(llm->tok, token, llm->held + llm->n_held, len, &len);
    llm->n_held += len;

    /* the first stop string in the text ends it */
    size_t cut = llm->n_held;
    for (int32_t i = 0; i < gp->n_stop_strings; i++) {
        const char *s = gp->stop_strings[i];
        const char *hit = *s ? memmem(llm->held, llm->n_held, s, strlen(s)) : NULL;
        if (hit && (size_t)(hit - llm->held) < cut) cut = (size_t)(hit - llm->held);
    }
    if (cut < llm->n_held) {
        *stop = PETREL_LLM_STOP_STRING;
        *stopped = true;
        emit(llm, cut, gp, &st);
        llm->n_held = 0;
        return st;
    }
    /* hold back the longest tail that begins a stop string */
    size_t hold = 0;
    for (int32_t i = 0; i < gp->n_stop_strings; i++) {
        size_t sl = strlen(gp->stop_strings[i]);
        size_t k = sl > 0 ? sl - 1 : 0; /* a whole match was handled above */
        if (k > llm->n_held) k = llm->n_held;
        for (; k > hold; k--) {
            if (!memcmp(llm->held + llm->n_held - k, gp->stop_strings[i], k)) {
                hold = k;
                break;
            }
        }
    }
    if (!emit(llm, utf8_complete(llm->held, llm->n_held - hold), gp, &st)) {
        *stop = PETREL_LLM_STOP_CALLBACK;
        *stopped = true;
    }
    return st;
}

/* ---- the generate loop ----------------------------------------------------------- */

petrel_llm_gen_params petrel_llm_gen_default_params(void) {
    petrel_llm_gen_params p = {.max_new_tokens = -1};
    return p;
}

static bool is_eos(const petrel_llm_t *llm, int32_t t) {
    for (int32_t i = 0; i < llm->n_eos; i++)
        if (llm->eos_ids[i] == t) return true;
    return false;
}

petrel_status petrel_llm_generate(petrel_llm_t *llm, const int32_t *ids, size_t n_ids,
                                  const petrel_llm_gen_params *params, petrel_llm_stats *stats) {
    if (!llm) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_llm_generate: NULL session");
    petrel_llm_gen_params gp = params ? *params : petrel_llm_gen_default_params();
    petrel_llm_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    stats->position = llm->pos;
    double t0 = now_s();

    /* Check the request before running anything. */
    if (n_ids > 0 && !ids) return pt_fail(&llm->err, PETREL_ERR_INVALID_ARG, "generate: NULL ids");
    if (gp.n_stop_strings < 0 || (gp.n_stop_strings > 0 && !gp.stop_strings))
        return pt_fail(&llm->err, PETREL_ERR_INVALID_ARG, "generate: bad stop strings");
    for (int32_t i = 0; i < gp.n_stop_strings; i++)
        if (!gp.stop_strings[i]) return pt_fail(&llm->err, PETREL_ERR_INVALID_ARG, "generate: NULL stop string");
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= llm->vocab_size)
            return pt_fail(&llm->err, PETREL_ERR_INVALID_ARG, "generate: token id %d at %zu is outside the vocabulary (%d)",
                           (int)ids[i], i, (int)llm->vocab_size);
    int64_t feed = (int64_t)n_ids + (llm->pending >= 0);
    if (feed == 0) return pt_fail(&llm->err, PETREL_ERR_INVALID_ARG, "generate: empty prompt");
    int64_t want = gp.max_new_tokens >= 0 ? gp.max_new_tokens : 1;
    if ((int64_t)llm->pos + feed + want > llm->max_cache_len)
        return pt_fail(&llm->err, PETREL_ERR_INVALID_ARG,
                       "%lld prompt + %s%lld new tokens do not fit in the KV cache (%d positions, %d in use): "
                       "ask for fewer tokens, reset, or export with a larger --max-cache-len",
                       (long long)feed, gp.max_new_tokens < 0 ? "at least " : "", (long long)want,
                       (int)llm->max_cache_len, (int)llm->pos);

    /* Plain argmax (no penalty reads the logits): forward keeps only the
     * index, computed where the logits are. */
    petrel_sampler_params sp = petrel_sampler_get_params(llm->sampler);
    llm->greedy = sp.temperature <= 0.0f && sp.repeat_penalty == 1.0f && sp.presence_penalty == 0.0f;
    /* Top-k sampling without penalties: forward keeps only the best
     * candidates, likewise (the draw is the same as from the whole row). */
    llm->top = petrel_sampler_takes_top(llm->sampler);

    /* Prefill: the prompt in chunks; the logits of its last position
     * give the first token. */
    llm->n_held = 0;
    llm->last_stop_eos = false;
    PT_TRY(prefill(llm, ids, n_ids, stats));
    for (size_t i = 0; i < n_ids; i++)
        if (petrel_sampler_accept(llm->sampler, ids[i]) != PETREL_OK)
            return pt_fail(&llm->err, PETREL_ERR_NOMEM, "%s", petrel_last_error());
    stats->prefill_s = now_s() - t0;
    double t_first = 0.0;

    /* Decode: sample, stream, feed back, until something says stop. */
    petrel_status st = PETREL_OK;
    petrel_llm_stop stop = PETREL_LLM_STOP_LENGTH;
    bool stopped = gp.max_new_tokens == 0;
    int32_t steps = 0, inflight = 0; /* fed steps enqueued whose tokens are not read yet */
    while (!stopped) {
        int32_t next;
        if (inflight > 0) { /* the step fed the token before: its argmax */
            int64_t t;
            if ((st = petrel_program_fed_result(llm->prog, &t)) != PETREL_OK) {
                pt_fail(&llm->err, st, "%s", petrel_program_error(llm->prog));
                break;
            }
            inflight--;
            llm->pos++;
            llm->pending = -1;
            steps++;
            if (t < 0) {
                st = pt_fail(&llm->err, PETREL_ERR_INVALID_ARG, "sampler: every logit is NaN");
                break;
            }
            next = (int32_t)t;
        } else if (llm->greedy) next = llm->argmax;
        else if ((st = llm->top ? petrel_sampler_sample_top(llm->sampler, llm->top_ids, llm->top_vals, llm->top_n, &next)
                                : petrel_sampler_sample(llm->sampler, llm->logits, &next)) != PETREL_OK) {
            pt_fail(&llm->err, st, "%s", petrel_last_error());
            break;
        }
        if (stats->generated_tokens++ == 0) {
            t_first = now_s();
            stats->ttft_s = t_first - t0;
        }
        llm->pending = next; /* not in the cache until fed */
        if ((st = petrel_sampler_accept(llm->sampler, next)) != PETREL_OK) {
            pt_fail(&llm->err, st, "%s", petrel_last_error());
            break;
        }
        if (gp.on_token) gp.on_token(next, gp.user);

        if (!gp.ignore_eos && is_eos(llm, next)) {
            stop = PETREL_LLM_STOP_EOS;
            llm->last_stop_eos = true;
            break;
        }
        if ((st = push_text(llm, next, &gp, &stop, &stopped)) != PETREL_OK || stopped) break;
        if (gp.max_new_tokens >= 0 && stats->generated_tokens >= gp.max_new_tokens) {
            stop = PETREL_LLM_STOP_LENGTH;
            break;
        }
        if (llm->pos >= llm->max_cache_len) {
            stop = PETREL_LLM_STOP_CACHE_FULL;
            break;
        }
        if (llm->greedy && !llm->no_feed) {
            /* a step for `next` (unless one is in flight already), then,
             * while the device runs it, the step for the token it feeds
             * when that one will not end the generation by its count */
            if (!inflight) {
                if ((st = fed_step(llm, next, llm->pos)) != PETREL_OK) break;
                inflight++;
            }
            bool more = (gp.max_new_tokens < 0 || stats->generated_tokens + 1 < gp.max_new_tokens) &&
                        llm->pos + 1 < llm->max_cache_len;
            if (more) {
                if ((st = fed_step(llm, -1, llm->pos + inflight)) != PETREL_OK) break;
                inflight++;
            }
            continue;
        }
        int64_t one = next;
        if ((st = forward(llm, &one, 1)) != PETREL_OK) break;
        llm->pending = -1;
        steps++;
    }
    /* What is still held back is text after all (no stop string followed). */
    if (st == PETREL_OK && stop != PETREL_LLM_STOP_STRING && stop != PETREL_LLM_STOP_CALLBACK)
        emit(llm, llm->n_held, &gp, &st);
    llm->n_held = 0;

    /* Decode speed leaves the first token out: it came from the prefill. */
    if (stats->generated_tokens > 0) stats->decode_s = now_s() - t_first;
    /* a fed step for a token that ended the generation: its index unread */
    for (int64_t t; inflight > 0; inflight--) {
        petrel_status s2 = petrel_program_fed_result(llm->prog, &t);
        if (st == PETREL_OK && s2 != PETREL_OK) st = pt_fail(&llm->err, s2, "%s", petrel_program_error(llm->prog));
    }
    stats->prefill_tok_s = stats->prefill_s > 0 ? stats->prompt_tokens / stats->prefill_s : 0.0;
    stats->decode_tok_s = steps > 0 && stats->decode_s > 0 ? steps / stats->decode_s : 0.0;
    stats->stop = stop;
    stats->position = llm->pos;
    return st;
}
