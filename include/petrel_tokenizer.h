/*
** petrel_tokenizer.h -- text <-> token ids for the LLM runner, driven by a
** Hugging Face `tokenizer.json` (plain or gzip-compressed).
**
** What is read from the file is what the Hugging Face `tokenizers` library
** would run: the added/special tokens (matched before anything else, with
** their lstrip/rstrip/single_word/normalized flags), the normalizer (NFC,
** NFD, NFKC, NFKD, Replace, Prepend, Lowercase, Strip, Sequence), the
** pre-tokenizer (Split with a string or regex pattern, ByteLevel, Metaspace,
** Digits, Sequence), a BPE model (byte-level or with byte fallback), the
** post-processor (TemplateProcessing, ByteLevel, Roberta/Bert, Sequence) and
** the decoder (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
** Sequence).  A file that uses anything else is refused at load with
** PETREL_ERR_UNSUPPORTED rather than tokenized differently.
**
** Usage:
**
**     petrel_tokenizer_t *tok = NULL;
**     if (petrel_tokenizer_load(&tok, "tokenizer.json") != PETREL_OK)
**         fprintf(stderr, "%s\n", petrel_last_error());
**     int32_t *ids = NULL;
**     size_t n = 0;
**     if (petrel_tokenizer_encode(tok, "Hello", 5, true, &ids, &n) == PETREL_OK) {
**         ...                         // ids[0..n), e.g. BOS first for Llama 3
**         free(ids);                  // the caller owns the array
**     }
**     petrel_tokenizer_free(tok);
**
** A tokenizer handle keeps a word cache and scratch buffers, so one handle
** must not be used by two threads at once; load one per thread instead.
*/
#ifndef PETREL_TOKENIZER_H
#define PETREL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "petrel.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct petrel_tokenizer petrel_tokenizer_t;

/**
 * Load a tokenizer from a `tokenizer.json` file; a gzip-compressed file
 * (e.g. `tokenizer.json.gz`) is recognised by its magic bytes.
 * @param out  receives the tokenizer; left NULL on failure
 * @param path file to read (borrowed)
 * @return PETREL_OK; PETREL_ERR_IO / PETREL_ERR_NOT_FOUND when the file
 *         cannot be read, PETREL_ERR_FORMAT when it is not a valid
 *         tokenizer.json, PETREL_ERR_UNSUPPORTED when it uses a component
 *         petrel does not implement.  petrel_last_error() says which.
 */
PETREL_API petrel_status petrel_tokenizer_load(petrel_tokenizer_t **out, const char *path);

/**
 * Load a tokenizer from `len` bytes of tokenizer.json text or gzip data in
 * memory.  The bytes are only read during the call (borrowed).  Statuses as
 * for petrel_tokenizer_load.
 */
PETREL_API petrel_status petrel_tokenizer_load_memory(petrel_tokenizer_t **out, const void *data,
                                                      size_t len);

/** Free a tokenizer; NULL is a no-op. */
PETREL_API void petrel_tokenizer_free(petrel_tokenizer_t *tok);

/** The message of the last failed encode/decode on this tokenizer.  Never NULL. */
PETREL_API const char *petrel_tokenizer_error(const petrel_tokenizer_t *tok);

/**
 * Encode `len` bytes of UTF-8 text into token ids, as the Hugging Face
 * `Tokenizer.encode(text, add_special_tokens=add_special).ids` would.
 * Special tokens written in the text (e.g. "<|im_start|>") are always
 * recognised; `add_special` only controls the post-processor (e.g. the BOS
 * that Llama 3 and Gemma 3 put first).
 * @param tok         tokenizer (its word cache is updated)
 * @param text        the text (borrowed; need not be NUL-terminated)
 * @param len         its length in bytes
 * @param add_special apply the post-processor's template
 * @param ids         receives a malloc'ed array the caller releases with
 *                    free(); NULL when there are no ids
 * @param n_ids       receives the number of ids
 * @return PETREL_OK; PETREL_ERR_INVALID_ARG for invalid UTF-8 or NULL
 *         arguments; PETREL_ERR_NOMEM.  On failure *ids is NULL, *n_ids is 0
 *         and petrel_tokenizer_error() says why.
 */
PETREL_API petrel_status petrel_tokenizer_encode(petrel_tokenizer_t *tok, const char *text,
                                                 size_t len, bool add_special, int32_t **ids,
                                                 size_t *n_ids);

/**
 * Decode token ids back into text, as the Hugging Face
 * `Tokenizer.decode(ids, skip_special_tokens=skip_special)` would: ids the
 * tokenizer does not know are skipped, and byte sequences that are not
 * valid UTF-8 come out as U+FFFD.
 * @param tok          tokenizer
 * @param ids          the ids (borrowed)
 * @param n_ids        how many
 * @param skip_special leave special tokens (BOS, <|im_end|>, ...) out
 * @param text         receives a malloc'ed, NUL-terminated string the
 *                     caller releases with free()
 * @param len          receives its length in bytes (without the NUL); may be NULL
 * @return PETREL_OK, PETREL_ERR_INVALID_ARG or PETREL_ERR_NOMEM.
 */
PETREL_API petrel_status petrel_tokenizer_decode(petrel_tokenizer_t *tok, const int32_t *ids,
                                                 size_t n_ids, bool skip_special, char **text,
                                                 size_t *len);

/**
 * The bytes one token contributes to decoded text, for streaming output:
 * byte-level and <0xNN> tokens give their raw bytes (possibly an incomplete
 * UTF-8 sequence that the next tokens finish), metaspace "▁" gives a space.
 * Context-dependent decoder steps (stripping the first space) are not
 * applied.
 * @param tok  tokenizer
 * @param id   the token
 * @param buf  where the bytes go (not NUL-terminated); may be NULL when cap is 0
 * @param cap  size of buf
 * @param len  receives the number of bytes the piece has, also when it
 *             does not fit
 * @return PETREL_OK; PETREL_ERR_INVALID_ARG when the id is unknown or the
 *         piece is longer than cap (nothing useful is written then).
 */
PETREL_API petrel_status petrel_tokenizer_token_to_piece(const petrel_tokenizer_t *tok, int32_t id,
                                                         char *buf, size_t cap, size_t *len);

/** The token string of an id as the vocabulary spells it ("Ġthe", "<bos>"),
 *  borrowed from the tokenizer; NULL for an unknown id. */
PETREL_API const char *petrel_tokenizer_id_to_token(const petrel_tokenizer_t *tok, int32_t id);
/** The id of a token string (added tokens first, then the vocabulary), or -1. */
PETREL_API int32_t petrel_tokenizer_token_id(const petrel_tokenizer_t *tok, const char *token);
/** One more than the largest id (vocabulary and added tokens together). */
PETREL_API int32_t petrel_tokenizer_vocab_size(const petrel_tokenizer_t *tok);
/** Whether an id is an added token flagged special. */
PETREL_API bool petrel_tokenizer_is_special(const petrel_tokenizer_t *tok, int32_t id);
/** The beginning-of-sequence id: the token the post-processor puts first,
 *  else a special token named <s>, <bos> or <|begin_of_text|>; -1 if none. */
PETREL_API int32_t petrel_tokenizer_bos_id(const petrel_tokenizer_t *tok);
/** The end-of-text id: the first special token named </s>, <eos>,
 *  <|end_of_text|> or <|endoftext|>; -1 if none.  Chat models often stop on
 *  another token (tokenizer_config.json's eos_token, e.g. <|eot_id|> or
 *  <|im_end|>): look that up with petrel_tokenizer_token_id. */
PETREL_API int32_t petrel_tokenizer_eos_id(const petrel_tokenizer_t *tok);

#ifdef __cplusplus
}
#endif
#endif /* PETREL_TOKENIZER_H */
