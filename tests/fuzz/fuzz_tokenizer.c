/*
** fuzz_tokenizer.c -- fuzz target: the first part of the input (up to a
** NUL byte) is a tokenizer.json, the rest a text to encode and decode.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "petrel_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    petrel_tokenizer_t *tok = NULL;
    if (petrel_tokenizer_load_memory(&tok, data, jlen) != PETREL_OK) return 0;
    if (nul) {
        const char *text = (const char *)nul + 1;
        size_t tlen = size - jlen - 1;
        int32_t *ids = NULL;
        size_t n = 0;
        if (petrel_tokenizer_encode(tok, text, tlen, true, &ids, &n) == PETREL_OK) {
            char *back = NULL;
            size_t blen = 0;
            if (petrel_tokenizer_decode(tok, ids, n, false, &back, &blen) == PETREL_OK) free(back);
            free(ids);
        }
    }
    petrel_tokenizer_free(tok);
    return 0;
}
