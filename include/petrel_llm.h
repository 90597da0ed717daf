/*
** petrel_llm.h -- text generation with an exported decoder-only language
** model: a sampler (greedy, temperature, top-k, top-p, min-p, repetition and
** presence penalties, seeded RNG) and a session that runs chunked prefill
** and one-token decode steps on a program with a static KV cache, streaming
** the text through a callback.
**
** The model file is a `.pt2` (or a `.petrel` compiled from one) written by
** python/petrel_export.py: its program maps (input_ids int64 [1, T],
** cache_position int64 [T]) to logits [1, T, vocab] with T dynamic, keeps
** its KV cache in mutable buffers, and carries `tokenizer.json` and
** `petrel_meta.json` (family, end-of-sequence ids, cache size, chunk size,
** chat template) as extra files.
**
** Usage:
**
**     petrel_llm_t *llm = NULL;
**     if (petrel_llm_load(&llm, "model.pt2", NULL) != PETREL_OK)
**         fprintf(stderr, "%s\n", petrel_last_error());
**     int32_t *ids = NULL;
**     size_t n = 0;
**     petrel_tokenizer_encode(petrel_llm_tokenizer(llm), "Once upon", 9, true, &ids, &n);
**     petrel_llm_gen_params gp = petrel_llm_gen_default_params();
**     gp.max_new_tokens = 32;
**     gp.on_text = print_text;            // called with complete UTF-8 pieces
**     petrel_llm_stats stats;
**     if (petrel_llm_generate(llm, ids, n, &gp, &stats) != PETREL_OK)
**         fprintf(stderr, "%s\n", petrel_llm_error(llm));
**     free(ids);
**     petrel_llm_free(llm);
**
** A session is one conversation: the KV cache, the position in it and the
** sampler's history persist across petrel_llm_generate calls until
** petrel_llm_reset.  One session must not be used by two threads at once.
** The library never prints.
*/
#ifndef PETREL_LLM_H
#define PETREL_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "petrel.h"
#include "petrel_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- sampler ------------------------------------------------------------ */

typedef struct petrel_sampler petrel_sampler_t;

/*
 * How a token is drawn from a row of logits.  The steps run in this order
 * (Hugging Face's logits processors do the same): penalties on the raw
 * logits, then greedy argmax when temperature <= 0, else divide by the
 * temperature, keep the top_k, softmax, keep the top_p nucleus, drop tokens
 * below min_p, and draw from what is left with the seeded RNG.
 */
typedef struct petrel_sampler_params {
    float temperature;      /* <= 0: greedy (argmax, lowest id on ties); default 0.8 */
    int32_t top_k;          /* keep the k most likely tokens; 0 = off; default 40 */
    float top_p;            /* keep the most likely tokens until their probability
                               reaches top_p (the one crossing it stays); 1 = off; default 0.95 */
    float min_p;            /* drop tokens less likely than min_p * p(most likely);
                               0 = off; default 0.05 */
    float repeat_penalty;   /* seen tokens: positive logits divided by it, negative
                               ones multiplied (CTRL / Hugging Face); 1 = off; default 1 */
    float presence_penalty; /* seen tokens: subtracted from the logit; 0 = off; default 0 */
    int32_t penalty_last_n; /* the penalties look at the last n accepted tokens;
                               0 = every token since the last reset; default 64 */
    uint64_t seed;          /* RNG seed; the same seed and logits give the same tokens
                               on every machine; default 0 */
} petrel_sampler_params;

/** The defaults listed above. */
PETREL_API petrel_sampler_params petrel_sampler_default_params(void);

/**
 * Create a sampler for rows of `n_vocab` logits.  Its scratch space is
 * allocated here, so sampling never allocates.
 * @param out     receives the sampler; left NULL on failure
 * @param n_vocab logits per row (> 0)
 * @param params  copied; NULL for petrel_sampler_default_params()
 * @return PETREL_OK; PETREL_ERR_INVALID_ARG for an out-of-range parameter
 *         (negative top_k, top_p outside (0, 1], min_p outside [0, 1],
 *         repeat_penalty <= 0, negative penalty_last_n, a NaN), with
 *         petrel_last_error() saying which; PETREL_ERR_NOMEM.
 */
PETREL_API petrel_status petrel_sampler_new(petrel_sampler_t **out, int32_t n_vocab,
                                            const petrel_sampler_params *params);
/** Free a sampler; NULL is a no-op. */
PETREL_API void petrel_sampler_free(petrel_sampler_t *s);
/** The sampler's parameters (a copy). */
PETREL_API petrel_sampler_params petrel_sampler_get_params(const petrel_sampler_t *s);
/** Forget the accepted tokens and restart the RNG from the seed. */
PETREL_API void petrel_sampler_reset(petrel_sampler_t *s);

/**
 * Record a token as part of the text (prompt or generated), for the
 * penalties.  Ids outside [0, n_vocab) are ignored.
 * @return PETREL_OK, PETREL_ERR_INVALID_ARG (NULL sampler) or
 *         PETREL_ERR_NOMEM (penalty_last_n == 0 keeps a growing history).
 */
PETREL_API petrel_status petrel_sampler_accept(petrel_sampler_t *s, int32_t token);

/**
 * Draw a token from one row of logits.  Does not accept it (call
 * petrel_sampler_accept with the token the caller keeps).
 * @param s      sampler (its RNG advances when sampling is random)
 * @param logits n_vocab values (borrowed, not modified)
 * @param token  receives the id
 * @return PETREL_OK; PETREL_ERR_INVALID_ARG for NULL arguments or when no
 *         logit is a number (all NaN).
 */
PETREL_API petrel_status petrel_sampler_sample(petrel_sampler_t *s, const float *logits,
                                               int32_t *token);

/**
 * Can the sampler draw from its top_k candidates alone
 * (petrel_sampler_sample_top)?  True for random sampling (temperature > 0)
 * with 0 < top_k < PETREL_TOPK_MAX and no penalty: the steps after top-k
 * read nothing else.
 */
PETREL_API bool petrel_sampler_takes_top(const petrel_sampler_t *s);

/**
 * petrel_sampler_sample from the row's best candidates only: ids and
 * values as petrel_program_output_topk gives them for k = top_k + 1 and
 * the sampler's temperature (the logits / temperature, larger first, lower
 * id first on ties; n <= top_k when the row has no more numbers, which
 * the one extra candidate tells apart).  Draws the token
 * petrel_sampler_sample would draw from the whole row.
 * @return PETREL_OK; PETREL_ERR_INVALID_ARG for NULL arguments, candidates
 *         out of order or range, or a sampler that !takes_top.
 */
PETREL_API petrel_status petrel_sampler_sample_top(petrel_sampler_t *s, const int32_t *ids,
                                                   const float *values, int32_t n, int32_t *token);

/* ---- model session ------------------------------------------------------ */

typedef struct petrel_llm petrel_llm_t;

/* The model families whose chat templates petrel knows. */
typedef enum petrel_llm_family {
    PETREL_LLM_FAMILY_LLAMA = 0,     /* Llama 3.x */
    PETREL_LLM_FAMILY_QWEN3 = 1,
    PETREL_LLM_FAMILY_QWEN3_MOE = 2,
    PETREL_LLM_FAMILY_GEMMA3 = 3,    /* Gemma 3 (text) */
    PETREL_LLM_FAMILY_PHI3 = 4,      /* Phi-3, Phi-4-mini */
    PETREL_LLM_FAMILY_COUNT
} petrel_llm_family;

typedef struct petrel_llm_opts {
    const char *backend;             /* "cpu" (default when NULL), "cuda" */
    petrel_sampler_params sampling;  /* the session's sampler */
    int32_t threads;                 /* CPU threads (petrel_load_opts.threads): 0 = one per CPU */
} petrel_llm_opts;

/** Backend NULL and petrel_sampler_default_params(). */
PETREL_API petrel_llm_opts petrel_llm_default_opts(void);

/**
 * Load a model file and create a session at position 0.
 * @param out  receives the session; left NULL on failure
 * @param path a `.pt2` or `.petrel` file (borrowed)
 * @param opts NULL for petrel_llm_default_opts()
 * @return PETREL_OK; the program's load statuses; PETREL_ERR_NOT_FOUND when
 *         the file carries no tokenizer.json or petrel_meta.json;
 *         PETREL_ERR_FORMAT for a malformed petrel_meta.json;
 *         PETREL_ERR_UNSUPPORTED when the program's inputs or outputs are
 *         not those of an exported LM.  petrel_last_error() says which.
 */
PETREL_API petrel_status petrel_llm_load(petrel_llm_t **out, const char *path,
                                         const petrel_llm_opts *opts);
/** Free a session; NULL is a no-op. */
PETREL_API void petrel_llm_free(petrel_llm_t *llm);
/** The message of the last failure on this session.  Never NULL. */
PETREL_API const char *petrel_llm_error(const petrel_llm_t *llm);

typedef struct petrel_llm_info {
    petrel_llm_family family;
    const char *family_name;         /* "llama", "qwen3", ... (borrowed) */
    int32_t vocab_size;              /* logits per position */
    int32_t max_cache_len;           /* KV-cache positions */
    int32_t max_chunk;               /* most tokens per program call (prefill chunk) */
    int32_t bos_id, pad_id;          /* -1 when none */
    const int32_t *eos_ids;          /* generation stops at these (borrowed) */
    int32_t n_eos;
    const char *chat_template;       /* the exporter's Jinja template, or NULL (borrowed) */
    int32_t position;                /* KV-cache positions in use */
    int32_t pending_token;           /* last sampled token, not in the cache yet: the
                                        next petrel_llm_generate feeds it first; -1 if none */
    bool last_stop_eos;              /* the last generate ended on an end-of-sequence id */
} petrel_llm_info;

/** Describe a session; the strings and arrays are borrowed from it. */
PETREL_API petrel_status petrel_llm_get_info(petrel_llm_info *out, const petrel_llm_t *llm);
/** The session's tokenizer (borrowed; valid until petrel_llm_free). */
PETREL_API petrel_tokenizer_t *petrel_llm_tokenizer(petrel_llm_t *llm);
/** The session's program (borrowed; valid until petrel_llm_free), e.g. to
 *  profile it.  Do not execute it or change its inputs between generate
 *  calls: the session keeps its position in the KV cache. */
PETREL_API petrel_program_t *petrel_llm_program(petrel_llm_t *llm);
/** The session's sampler (borrowed; valid until petrel_llm_set_sampling or
 *  petrel_llm_free), e.g. to read its parameters. */
PETREL_API petrel_sampler_t *petrel_llm_sampler(petrel_llm_t *llm);
/** Replace the sampler by one with `params` (copied); history starts empty.
 *  On failure the old sampler stays. */
PETREL_API petrel_status petrel_llm_set_sampling(petrel_llm_t *llm, const petrel_sampler_params *params);

/** Start over: KV cache back to its load-time state
 *  (petrel_program_reset_state), position 0, no pending token, the
 *  sampler reset. */
PETREL_API petrel_status petrel_llm_reset(petrel_llm_t *llm);

/* Why a generate call ended. */
typedef enum petrel_llm_stop {
    PETREL_LLM_STOP_EOS = 0,         /* sampled an end-of-sequence id */
    PETREL_LLM_STOP_STRING = 1,      /* the text reached a stop string */
    PETREL_LLM_STOP_LENGTH = 2,      /* max_new_tokens sampled */
    PETREL_LLM_STOP_CACHE_FULL = 3,  /* no KV-cache position left */
    PETREL_LLM_STOP_CALLBACK = 4,    /* on_text returned false */
    PETREL_LLM_STOP_COUNT
} petrel_llm_stop;

/** Receives generated text: `len` bytes of complete UTF-8 (never half a
 *  character), not NUL-terminated.  Return false to stop generating. */
typedef bool (*petrel_llm_text_fn)(const char *text, size_t len, void *user);
/** Receives each sampled token id, end-of-sequence ids included. */
typedef void (*petrel_llm_token_fn)(int32_t token, void *user);

typedef struct petrel_llm_gen_params {
    int32_t max_new_tokens;          /* tokens to sample at most; < 0: until an
                                        end-of-sequence id or the cache is full */
    const char *const *stop_strings; /* generation ends where the text first contains
                                        one; it and what follows are not emitted (borrowed) */
    int32_t n_stop_strings;
    bool ignore_eos;                 /* do not stop at end-of-sequence ids */
    bool emit_special;               /* stream the text of special tokens too
                                        (e.g. "<think>"-like control tokens); default false */
    petrel_llm_text_fn on_text;      /* NULL = no text */
    petrel_llm_token_fn on_token;    /* NULL = no ids */
    void *user;                      /* passed to both callbacks */
} petrel_llm_gen_params;

/** max_new_tokens -1, no stop strings, stop at EOS, no callbacks. */
PETREL_API petrel_llm_gen_params petrel_llm_gen_default_params(void);

typedef struct petrel_llm_stats {
    int32_t prompt_tokens;           /* tokens prefilled by this call */
    int32_t prefill_chunks;          /* program calls for them */
    int32_t generated_tokens;        /* tokens sampled */
    double prefill_s;                /* seconds in prefill calls */
    double decode_s;                 /* seconds from the first sampled token to the end */
    double ttft_s;                   /* from the call to the first sampled token */
    double prefill_tok_s;            /* prompt_tokens / prefill_s */
    double decode_tok_s;             /* tokens after the first / decode_s (0 when none) */
    petrel_llm_stop stop;
    int32_t position;                /* KV-cache positions in use afterwards */
} petrel_llm_stats;

/**
 * Continue the session's text with `ids` and generate.  The pending token
 * of the previous call (if any) is fed first, then `ids`, in chunks of at
 * most max_chunk tokens; then one token is sampled per step from the
 * logits of the last position and fed back, until an end-of-sequence id,
 * a stop string, max_new_tokens, the end of the cache, or on_text
 * returning false.  The last sampled token stays pending (fed by the next
 * call), so across calls the cache holds the whole conversation.
 *
 * The cache capacity is checked before anything runs: the pending token +
 * n_ids + max_new_tokens must fit in the positions left (max_new_tokens
 * < 0: at least one token must fit).
 * @param llm    session
 * @param ids    prompt ids (borrowed); may be empty when a token is pending
 * @param n_ids  how many
 * @param params NULL for petrel_llm_gen_default_params() (no output then)
 * @param stats  receives timings and counts when not NULL
 * @return PETREL_OK (whatever ended generation: see stats->stop);
 *         PETREL_ERR_INVALID_ARG when the request does not fit the cache
 *         (nothing has run then), an id is out of range or there is no
 *         prompt at all; a program status when a call fails (the session
 *         should be reset then).  petrel_llm_error() says why.
 */
PETREL_API petrel_status petrel_llm_generate(petrel_llm_t *llm, const int32_t *ids, size_t n_ids,
                                             const petrel_llm_gen_params *params,
                                             petrel_llm_stats *stats);

/**
 * The text of one user turn in the family's chat template, ready to
 * encode with add_special = false and pass to petrel_llm_generate.  The
 * first turn of a conversation (position 0, nothing pending) starts the
 * template (BOS for Llama 3 and Gemma 3, the system message); a later turn
 * continues after the previous answer, closing it with the end-of-turn
 * token when generation stopped before the model wrote one.  The templates
 * are those of Llama 3.x (header ids), Qwen3 (<|im_start|>; thinking left
 * on, earlier answers kept as generated), Gemma 3 (<start_of_turn>; the
 * system text prefixed to the first user message) and Phi-3 (<|user|>;
 * without newlines when the model's template has none, as Phi-4-mini's).
 * @param system NULL or a system message (first turn only)
 * @param user   the user's message (borrowed)
 * @param text   receives a malloc'ed, NUL-terminated string; release with free()
 * @param len    receives its length; may be NULL
 * @return PETREL_OK; PETREL_ERR_INVALID_ARG or PETREL_ERR_NOMEM, with
 *         petrel_last_error() saying why.
 */
PETREL_API petrel_status petrel_llm_chat_prompt(petrel_llm_t *llm, const char *system,
                                                const char *user, char **text, size_t *len);

/** A short name for a stop reason ("eos", "stop string", "length", ...). */
PETREL_API const char *petrel_llm_stop_str(petrel_llm_stop s);

#ifdef __cplusplus
}
#endif
#endif /* PETREL_LLM_H */
