/*
** tokenizer.h -- internals of the tokenizer.json tokenizer behind
** include/petrel_tokenizer.h.  Module prefix tk_.
**
** Encoding follows the Hugging Face `tokenizers` pipeline step by step, so
** that every id matches:
**
**   1. added tokens with normalized=false are cut out of the raw text
**      (leftmost-longest, then lstrip/rstrip/single_word);
**   2. each remaining segment is normalized (tk_norm_*), and added tokens
**      with normalized=true are cut out of the result;
**   3. each remaining piece is pre-tokenized (tk_pre_*) into words;
**   4. each word goes through the BPE model (bpe.c), with a word cache;
**   5. the post-processor's template adds BOS/EOS when asked.
**
** Decoding maps ids to token strings and runs the decoder chain
** (decode.c).  Files: text.c (buffers, UTF-8, hashing, regex patterns),
** pretokenize.c (normalizers and pre-tokenizers), bpe.c, decode.c and
** tokenizer.c (loading and the public API); unicode_extra.h is generated.
**
** Layer: the LLM runner (src/runners/llm), on top of core's allocation and
** error helpers; nothing in the runtime depends on it.  Libraries: jansson
** (JSON), PCRE2 (the pre-tokenizer regexes, with Unicode properties and
** JIT), utf8proc (normal forms) and zlib (gzip files).
**
** Hugging Face compiles regexes with Oniguruma and its tables follow newer
** Unicode versions than Debian's PCRE2 and utf8proc; text.c and
** pretokenize.c bridge the gap with the code-point lists of
** unicode_extra.h, so ids match for recently encoded scripts too.
*/
#ifndef PETREL_LLM_TOKENIZER_H
#define PETREL_LLM_TOKENIZER_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include "../../core/core.h"
#include "petrel_tokenizer.h"

/* ---- growable buffers (text.c) ------------------------------------------ */

typedef struct tk_buf {
    char *p;
    size_t n, cap;
} tk_buf;

/* Make room for `extra` more bytes (plus a NUL); false when out of memory. */
PT_HIDDEN bool tk_buf_reserve(tk_buf *b, size_t extra);
PT_HIDDEN bool tk_buf_put(tk_buf *b, const void *s, size_t n);
PT_HIDDEN void tk_buf_free(tk_buf *b);
static inline bool tk_buf_putc(tk_buf *b, char c) {
    if (b->n + 1 >= b->cap && !tk_buf_reserve(b, 1)) return false;
    b->p[b->n++] = c;
    return true;
}

typedef struct tk_ids {
    int32_t *p;
    size_t n, cap;
} tk_ids;

PT_HIDDEN bool tk_ids_push(tk_ids *v, int32_t id);
PT_HIDDEN bool tk_ids_append(tk_ids *v, const int32_t *ids, size_t n);

/* A list of text pieces stored back to back in one buffer.  `first` marks
 * the piece that starts at offset 0 of the original text (Metaspace's
 * prepend_scheme "first" looks at it). */
typedef struct tk_piece {
    size_t off, len;
    bool first;
} tk_piece;

typedef struct tk_pieces {
    tk_buf text;
    tk_piece *p;
    size_t n, cap;
} tk_pieces;

/* Append a piece made of `n` bytes at `s` (copied). */
PT_HIDDEN bool tk_pieces_add(tk_pieces *ps, const char *s, size_t n, bool first);
/* Register the bytes appended to ps->text since offset `off` as a piece. */
PT_HIDDEN bool tk_pieces_commit(tk_pieces *ps, size_t off, bool first);
PT_HIDDEN void tk_pieces_clear(tk_pieces *ps);
PT_HIDDEN void tk_pieces_free(tk_pieces *ps);

/* ---- UTF-8 (text.c) ------------------------------------------------------ */

/* Strict validation: no overlong forms, surrogates or values past U+10FFFF. */
PT_HIDDEN bool tk_utf8_valid(const char *s, size_t n);
/* Length of the sequence a lead byte starts (1 for anything invalid). */
static inline size_t tk_utf8_len(unsigned char c) {
    return c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf8 ? 4 : 1;
}
/* Decode the code point at s (valid UTF-8 assumed); *adv gets its length. */
static inline uint32_t tk_utf8_decode(const char *s, size_t *adv) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) { *adv = 1; return u[0]; }
    if (u[0] < 0xe0) { *adv = 2; return ((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f); }
    if (u[0] < 0xf0) {
        *adv = 3;
        return ((uint32_t)(u[0] & 0x0f) << 12) | ((uint32_t)(u[1] & 0x3f) << 6) | (u[2] & 0x3f);
    }
    *adv = 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3f) << 12) |
           ((uint32_t)(u[2] & 0x3f) << 6) | (u[3] & 0x3f);
}
/* Write cp as UTF-8 into out; returns the byte count (1..4). */
PT_HIDDEN size_t tk_utf8_encode(uint32_t cp, char out[4]);
/* Unicode White_Space, as Rust's char::is_whitespace. */
PT_HIDDEN bool tk_is_whitespace(uint32_t cp);
/* Append bytes as text, replacing each maximal invalid UTF-8 subsequence
 * by U+FFFD exactly as Rust's String::from_utf8_lossy does. */
PT_HIDDEN bool tk_put_lossy(tk_buf *out, const char *s, size_t n);

/* ---- hashing and a u64 -> u64 map (text.c) ------------------------------- */

PT_HIDDEN uint64_t tk_hash(const void *p, size_t n);

/* Open addressing, linear probing; the key UINT64_MAX is reserved. */
typedef struct tk_map64 {
    uint64_t *keys;
    uint64_t *vals;
    size_t mask, n;
} tk_map64;

PT_HIDDEN bool tk_map64_init(tk_map64 *m, size_t expected);
PT_HIDDEN void tk_map64_free(tk_map64 *m);
/* Insert or overwrite; false when out of memory. */
PT_HIDDEN bool tk_map64_put(tk_map64 *m, uint64_t key, uint64_t val);
static inline uint64_t tk_mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}
/* Look a key up: its value, or `missing`. */
static inline uint64_t tk_map64_get(const tk_map64 *m, uint64_t key, uint64_t missing) {
    if (!m->keys) return missing;
    for (size_t i = tk_mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == UINT64_MAX) return missing;
    }
}

/* ---- patterns: a literal string or a PCRE2 regex (text.c) ---------------- */

typedef struct tk_pattern {
    char *lit;         /* literal pattern (owned), or NULL */
    size_t lit_len;
    pcre2_code *re;    /* compiled regex (owned), or NULL */
} tk_pattern;

typedef struct tk_match {
    size_t start, end;
} tk_match;

typedef struct tk_matches {
    tk_match *p;
    size_t n, cap;
} tk_matches;

/* Per-tokenizer PCRE2 state: one match block and a JIT stack, reused. */
typedef struct tk_rx {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
} tk_rx;

PT_HIDDEN petrel_status tk_rx_init(tk_rx *rx, pt_err *err);
PT_HIDDEN void tk_rx_free(tk_rx *rx);

/* Parse a {"String": s} or {"Regex": r} pattern object.  Regexes are
 * written for Oniguruma (what Hugging Face uses); the few places PCRE2
 * differs (\s does not include U+0085) are translated. */
PT_HIDDEN petrel_status tk_pattern_parse(tk_pattern *p, json_t *j, const char *what, pt_err *err);
PT_HIDDEN petrel_status tk_pattern_regex(tk_pattern *p, const char *src, size_t n, const char *what,
                                         pt_err *err);
PT_HIDDEN void tk_pattern_free(tk_pattern *p);
/* Compile a character class: "[" + body + the code points of `extra` (a
 * unicode_extra.h entry) + "]" + suffix. */
PT_HIDDEN petrel_status tk_pattern_class(tk_pattern *p, const char *body, const char *extra,
                                         const char *suffix, const char *what, pt_err *err);
/* Every non-overlapping match in s[0..n), left to right (an empty match
 * advances by one character). */
PT_HIDDEN petrel_status tk_pattern_find(const tk_pattern *p, tk_rx *rx, const char *s, size_t n,
                                        tk_matches *out, pt_err *err);

/* Scratch space reused across calls: the PCRE2 state, match and segment
 * lists, two text buffers and two piece lists. */
typedef struct tk_seg {
    size_t start, end;
    bool flag;
} tk_seg;

typedef struct tk_scratch {
    tk_rx rx;
    tk_matches m;
    tk_seg *seg;
    size_t seg_cap;
    tk_buf norm, tmp;
    tk_pieces words, pieces;
} tk_scratch;

/* ---- normalizers and pre-tokenizers (pretokenize.c) ---------------------- */

typedef enum tk_norm_kind {
    TK_NORM_NFC,
    TK_NORM_NFD,
    TK_NORM_NFKC,
    TK_NORM_NFKD,
    TK_NORM_REPLACE,
    TK_NORM_PREPEND,
    TK_NORM_LOWERCASE,
    TK_NORM_STRIP,
    TK_NORM_KIND_COUNT
} tk_norm_kind;

typedef struct tk_norm_step {
    tk_norm_kind kind;
    tk_pattern pat;    /* REPLACE */
    char *str;         /* REPLACE content / PREPEND text (owned) */
    size_t str_len;
    bool left, right;  /* STRIP */
} tk_norm_step;

typedef enum tk_split_behavior {
    TK_SPLIT_REMOVED,
    TK_SPLIT_ISOLATED,
    TK_SPLIT_MERGED_WITH_PREVIOUS,
    TK_SPLIT_MERGED_WITH_NEXT,
    TK_SPLIT_CONTIGUOUS,
    TK_SPLIT_BEHAVIOR_COUNT
} tk_split_behavior;

typedef enum tk_pre_kind {
    TK_PRE_SPLIT,
    TK_PRE_BYTE_LEVEL,
    TK_PRE_METASPACE,
    TK_PRE_DIGITS,
    TK_PRE_KIND_COUNT
} tk_pre_kind;

typedef enum tk_prepend_scheme {
    TK_PREPEND_NEVER,
    TK_PREPEND_FIRST,
    TK_PREPEND_ALWAYS,
    TK_PREPEND_SCHEME_COUNT
} tk_prepend_scheme;

typedef struct tk_pre_step {
    tk_pre_kind kind;
    tk_pattern pat;               /* SPLIT; BYTE_LEVEL with use_regex */
    tk_split_behavior behavior;   /* SPLIT */
    bool invert;                  /* SPLIT */
    bool add_prefix_space;        /* BYTE_LEVEL */
    bool use_regex;               /* BYTE_LEVEL */
    char rep[4];                  /* METASPACE replacement character, UTF-8 */
    size_t rep_len;
    tk_prepend_scheme prepend;    /* METASPACE */
    bool split;                   /* METASPACE */
    bool individual_digits;       /* DIGITS */
} tk_pre_step;

/* Parse a normalizer / pre-tokenizer object (null = none); a Sequence is
 * flattened into the step list, which the caller frees with the matching
 * _free.  PETREL_ERR_UNSUPPORTED for types petrel lacks. */
PT_HIDDEN petrel_status tk_norm_parse(tk_norm_step **steps, int *n, json_t *j, pt_err *err);
PT_HIDDEN void tk_norm_free(tk_norm_step *steps, int n);
PT_HIDDEN petrel_status tk_pre_parse(tk_pre_step **steps, int *n, json_t *j, pt_err *err);
PT_HIDDEN void tk_pre_free(tk_pre_step *steps, int n);

/* Normalize s[0..n) (valid UTF-8) into sc->norm (cleared first); s must
 * not point into sc->norm or sc->tmp.  *first (may be NULL) says whether
 * the text's first character maps to offset 0 of the input; it is cleared
 * when a step removes or merges the leading characters, as Hugging Face's
 * alignments do (Metaspace's prepend_scheme "first" depends on it). */
PT_HIDDEN petrel_status tk_normalize(const tk_norm_step *steps, int n_steps, tk_scratch *sc,
                                     const char *s, size_t n, bool *first, pt_err *err);
/* Pre-tokenize s[0..n) into words in sc->words (cleared first); `first`
 * says the text starts at offset 0 of the input.  s must not point into
 * sc->words, sc->pieces or sc->tmp. */
PT_HIDDEN petrel_status tk_pretokenize(const tk_pre_step *steps, int n_steps, tk_scratch *sc,
                                       const char *s, size_t n, bool first, pt_err *err);
/* GPT-2's byte <-> unicode table used by the ByteLevel components. */
PT_HIDDEN uint32_t tk_byte_to_cp(uint8_t b);
/* The byte a code point stands for, or -1 when it is not in the table. */
PT_HIDDEN int tk_cp_to_byte(uint32_t cp);

/* ---- BPE model (bpe.c) ---------------------------------------------------- */

typedef struct tk_str {
    uint32_t off, len; /* into an arena; off == UINT32_MAX: no such token */
} tk_str;

/* Word-cache entry: key bytes and value ids live in arenas. */
typedef struct tk_cache_slot {
    uint64_t hash; /* 0 = empty */
    uint32_t key_off, key_len;
    uint32_t val_off, val_n;
} tk_cache_slot;

/* Vocabulary-map slot: a string in the arena and its id (id < 0: empty). */
typedef struct tk_vslot {
    uint32_t hash, off, len;
    int32_t id;
} tk_vslot;

typedef struct tk_bpe {
    tk_buf arena;          /* vocabulary strings, back to back */
    tk_str *tok;           /* (n_tok) id -> string */
    int32_t n_tok;         /* one more than the largest vocabulary id */
    tk_vslot *vmap;        /* string -> id, open addressing */
    size_t vmask;
    tk_map64 merges;       /* (left << 32 | right) -> (rank << 32 | new id) */
    int32_t unk_id;        /* -1: none */
    char *unk_token;       /* as named in the file, for messages (owned) */
    bool fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix (owned) */
    size_t prefix_len, suffix_len;
    int32_t byte_id[256];  /* id of "<0xNN>", -1 if absent */
    /* word cache */
    tk_cache_slot *cache;
    size_t cache_mask, cache_n;
    tk_buf cache_keys;
    tk_ids cache_vals;
    /* scratch for merging one word */
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
} tk_bpe;

/* Build the model from the "model" object.  PETREL_ERR_FORMAT for a broken
 * vocabulary or merge list, PETREL_ERR_UNSUPPORTED for non-BPE models. */
PT_HIDDEN petrel_status tk_bpe_load(tk_bpe *b, json_t *model, pt_err *err);
PT_HIDDEN void tk_bpe_free(tk_bpe *b);
/* Id of a vocabulary string, or -1. */
PT_HIDDEN int32_t tk_bpe_lookup(const tk_bpe *b, const char *s, size_t n);
/* Encode one pre-tokenized word, appending its ids. */
PT_HIDDEN petrel_status tk_bpe_encode(tk_bpe *b, const char *s, size_t n, tk_ids *out,
                                      pt_err *err);

/* ---- decoders (decode.c) -------------------------------------------------- */

typedef enum tk_dec_kind {
    TK_DEC_BYTE_LEVEL,
    TK_DEC_REPLACE,
    TK_DEC_BYTE_FALLBACK,
    TK_DEC_FUSE,
    TK_DEC_STRIP,
    TK_DEC_METASPACE,
    TK_DEC_KIND_COUNT
} tk_dec_kind;

typedef struct tk_dec_step {
    tk_dec_kind kind;
    tk_pattern pat;          /* REPLACE */
    char *str;               /* REPLACE content (owned) */
    size_t str_len;
    uint32_t cp;             /* STRIP content / METASPACE replacement */
    int start, stop;         /* STRIP counts */
    bool prepend;            /* METASPACE: prepend_scheme != never */
} tk_dec_step;

PT_HIDDEN petrel_status tk_dec_parse(tk_dec_step **steps, int *n, json_t *j, pt_err *err);
PT_HIDDEN void tk_dec_free(tk_dec_step *steps, int n);
/* Run the decoder chain over the token strings in `toks` (consumed as
 * scratch; sc->pieces is used too) and append the joined text to out.  With no steps the tokens
 * are joined with spaces, as Hugging Face does without a decoder. */
PT_HIDDEN petrel_status tk_decode_chain(const tk_dec_step *steps, int n_steps, bool has_decoder,
                                        tk_scratch *sc, tk_pieces *toks, tk_buf *out,
                                        pt_err *err);
/* The bytes of one token for streaming (see petrel_tokenizer_token_to_piece). */
PT_HIDDEN petrel_status tk_decode_piece(const tk_dec_step *steps, int n_steps, const char *s,
                                        size_t n, tk_buf *out);

/* ---- the tokenizer (tokenizer.c) ------------------------------------------ */

typedef struct tk_added {
    int32_t id;
    char *content;      /* owned */
    size_t len;
    char *norm;         /* normalized content of a normalized token (owned),
                           the string it decodes to; NULL: content */
    size_t norm_len;
    bool single_word, lstrip, rstrip, normalized, special;
} tk_added;

/* Byte trie over added-token contents for leftmost-longest matching. */
typedef struct tk_trie {
    int32_t root[256];  /* child of the root per byte, -1 none */
    tk_map64 edges;     /* (node << 8 | byte) -> child */
    int32_t *term;      /* node -> index into tk added[], -1 none */
    size_t n_nodes, cap;
} tk_trie;

/* A run of text (id < 0) or a matched added token, as byte offsets. */
typedef struct tk_part {
    size_t start, end;
    int32_t id;
} tk_part;

typedef struct tk_parts {
    tk_part *p;
    size_t n, cap;
} tk_parts;

struct petrel_tokenizer {
    pt_err err;
    tk_bpe bpe;
    tk_added *added;
    int n_added;
    int32_t *added_of_id;  /* (vocab_size) id -> index into added, -1 */
    tk_trie trie_raw;      /* normalized=false tokens, matched on raw text */
    tk_trie trie_norm;     /* normalized=true tokens, matched after normalizing */
    tk_pattern word;       /* word characters, for single_word tokens */
    tk_norm_step *norm;
    int n_norm;
    tk_pre_step *pre;
    int n_pre;
    tk_dec_step *dec;
    int n_dec;
    bool has_decoder;
    tk_ids prefix, suffix; /* post-processor template around the sequence */
    int32_t vocab_size, bos_id, eos_id;
    tk_scratch sc;
    tk_parts parts_raw, parts_norm;
    tk_pieces toks;        /* decode: token strings */
};

#endif /* PETREL_LLM_TOKENIZER_H */
