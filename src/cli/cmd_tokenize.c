/*
** cmd_tokenize.c -- `petrel tokenize`: text on stdin to token ids on stdout
** (space-separated, one line), or with --decode ids on stdin back to text,
** using a Hugging Face tokenizer.json.  The whole of stdin is the text,
** trailing newline included, so the ids are exactly those of
** Tokenizer.from_file(path).encode(text).ids.
*/
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "petrel_tokenizer.h"

/* Read all of stdin; NULL when out of memory or on a read error. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            char *p = realloc(buf, cap * 2 + 1);
            if (!p) break;
            buf = p;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, stdin);
        n += k;
        if (k == 0) {
            if (ferror(stdin)) break;
            buf[n] = '\0';
            *len = n;
            return buf;
        }
    }
    free(buf);
    return NULL;
}

static int encode(petrel_tokenizer_t *tok, bool add_special) {
    size_t len;
    char *text = read_stdin(&len);
    if (!text) return cli_error("tokenize: cannot read stdin");
    int32_t *ids = NULL;
    size_t n = 0;
    petrel_status st = petrel_tokenizer_encode(tok, text, len, add_special, &ids, &n);
    free(text);
    if (st != PETREL_OK) return cli_error("%s", petrel_tokenizer_error(tok));
    for (size_t i = 0; i < n; i++) printf("%s%" PRId32, i ? " " : "", ids[i]);
    printf("\n");
    free(ids);
    return 0;
}

static int decode(petrel_tokenizer_t *tok, bool skip_special) {
    size_t len;
    char *text = read_stdin(&len);
    if (!text) return cli_error("tokenize: cannot read stdin");
    size_t n = 0, cap = 256;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = text;
    int rc = 0;
    while (ids) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')) {
            int w = 0;
            while (p[w] && p[w] != ' ' && p[w] != '\t' && p[w] != '\n' && p[w] != '\r' && w < 20) w++;
            rc = cli_error("tokenize: '%.*s' is not a token id", w, p);
            break;
        }
        if (n == cap) {
            int32_t *q = realloc(ids, cap * 2 * sizeof *ids);
            if (!q) {
                free(ids);
                ids = NULL;
                break;
            }
            ids = q;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    free(text);
    if (!ids) return cli_error("tokenize: out of memory");
    if (rc) {
        free(ids);
        return rc;
    }
    char *out = NULL;
    size_t out_len = 0;
    petrel_status st = petrel_tokenizer_decode(tok, ids, n, skip_special, &out, &out_len);
    free(ids);
    if (st != PETREL_OK) return cli_error("%s", petrel_tokenizer_error(tok));
    fwrite(out, 1, out_len, stdout);
    free(out);
    return 0;
}

/* `petrel tokenize` entry: parse the flags, load the tokenizer, encode or
 * decode stdin.  Returns the exit code (1 with a message on any error). */
int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    bool do_decode = false, no_special = false, keep_special = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer")) {
            if (i + 1 >= argc) return cli_error("tokenize: --tokenizer needs a file");
            path = argv[++i];
        } else if (!strcmp(argv[i], "--decode")) {
            do_decode = true;
        } else if (!strcmp(argv[i], "--no-special")) {
            no_special = true;
        } else if (!strcmp(argv[i], "--keep-special")) {
            keep_special = true;
        } else {
            return cli_error("tokenize: unknown argument '%s' (see 'petrel help')", argv[i]);
        }
    }
    if (!path) return cli_error("tokenize: --tokenizer is required (see 'petrel help')");
    if (do_decode && no_special) return cli_error("tokenize: --no-special applies to encoding, not --decode");
    if (!do_decode && keep_special) return cli_error("tokenize: --keep-special applies to --decode only");
    petrel_tokenizer_t *tok = NULL;
    if (petrel_tokenizer_load(&tok, path) != PETREL_OK) return cli_error("%s", petrel_last_error());
    int rc = do_decode ? decode(tok, !keep_special) : encode(tok, !no_special);
    petrel_tokenizer_free(tok);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) rc = cli_error("tokenize: write error");
    return rc;
}
