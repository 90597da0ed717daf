/*
** cmd_generate.c -- `petrel generate -m MODEL -p PROMPT [...]`: continue a
** prompt with an exported LM (python/petrel_export.py), streaming the text
** to stdout; one stats line goes to stderr at the end.  The prompt is
** encoded as the tokenizer does by default (its post-processor adds BOS
** where the model expects it); --raw leaves that out and --chat wraps the
** prompt in the model family's chat template.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_STOP 16

typedef struct out_state {
    size_t bytes;     /* written to stdout */
    char last;        /* the last byte written */
    int32_t *ids;     /* generated ids, kept for --ids-out */
    size_t n, cap;
    bool oom;
} out_state;

static void collect_id(int32_t token, void *user) {
    out_state *o = user;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        int32_t *v = realloc(o->ids, cap * sizeof *v);
        if (!v) {
            o->oom = true;
            return;
        }
        o->ids = v;
        o->cap = cap;
    }
    o->ids[o->n++] = token;
}

/* Write the generated ids, space-separated, one line. */
static int write_ids(FILE *f, const out_state *o) {
    for (size_t i = 0; i < o->n; i++) fprintf(f, "%s%d", i ? " " : "", o->ids[i]);
    fputc('\n', f);
    return fflush(f) == 0 && !ferror(f) && !o->oom ? 0 : -1;
}

static bool print_text(const char *text, size_t len, void *user) {
    out_state *o = user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    o->bytes += len;
    o->last = text[len - 1];
    return true;
}

/* `petrel generate` entry: returns the exit code (1 with a one-line
 * message on any error). */
int cmd_generate(int argc, char **argv) {
    cli_llm_flags f;
    cli_llm_flags_init(&f);
    const char *prompt = NULL, *system = NULL, *stops[MAX_STOP];
    int n_stop = 0;
    bool raw = false, chat = false, ignore_eos = false;
    const char *ids_out = NULL;
    for (int i = 0; i < argc; i++) {
        int r = cli_llm_flag(&f, "generate", argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        const char *a = argv[i];
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt") || !strcmp(a, "--system") || !strcmp(a, "--stop")) {
            if (i + 1 >= argc) return cli_error("generate: %s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--system")) system = v;
            else if (!strcmp(a, "--stop")) {
                if (n_stop == MAX_STOP) return cli_error("generate: at most %d --stop strings", MAX_STOP);
                if (!*v) return cli_error("generate: --stop needs a non-empty string");
                stops[n_stop++] = v;
            } else prompt = v;
        } else if (!strcmp(a, "--raw")) {
            raw = true;
        } else if (!strcmp(a, "--chat")) {
            chat = true;
        } else if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
        } else if (!strcmp(a, "--ids-out")) {
            if (i + 1 >= argc) return cli_error("generate: --ids-out needs a file name");
            ids_out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_error("generate: unknown option '%s' (see 'petrel help')", a);
        } else {
            return cli_error("generate: unexpected argument '%s' (the prompt goes after -p)", a);
        }
    }
    if (!prompt) return cli_error("generate: -p PROMPT is required (see 'petrel help')");
    if (raw && chat) return cli_error("generate: --raw and --chat exclude each other");
    if (system && !chat) return cli_error("generate: --system goes with --chat");
    if (!f.model) return cli_error("generate: -m MODEL is required (see 'petrel help')");

    /* --ids-out is opened before any work: a bad path fails at once, and
     * after a failure below the file is removed, never left half-written */
    if (ids_out && cli_check_output("generate", ids_out, &f.model, 1, false)) return 1;
    FILE *ids_file = NULL;
    if (ids_out && !(ids_file = fopen(ids_out, "w")))
        return cli_error("generate: cannot write '%s': %s", ids_out, strerror(errno));

    petrel_llm_t *llm = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    out_state o = {0};
    petrel_status st;
    int rc = cli_llm_load(&llm, &f, "generate");
    if (rc) goto done;
    petrel_tokenizer_t *tok = petrel_llm_tokenizer(llm);
    if (chat) {
        char *text = NULL;
        size_t len = 0;
        st = petrel_llm_chat_prompt(llm, system, prompt, &text, &len);
        if (st != PETREL_OK) {
            rc = cli_error("%s", petrel_last_error());
            goto done;
        }
        st = petrel_tokenizer_encode(tok, text, len, false, &ids, &n_ids);
        free(text);
    } else {
        st = petrel_tokenizer_encode(tok, prompt, strlen(prompt), !raw, &ids, &n_ids);
    }
    if (st != PETREL_OK) {
        rc = cli_error("generate: %s", petrel_tokenizer_error(tok));
        goto done;
    }
    if (n_ids == 0) {
        rc = cli_error("generate: the prompt is empty");
        goto done;
    }

    petrel_llm_gen_params gp = petrel_llm_gen_default_params();
    if (ids_out) gp.on_token = collect_id;
    gp.max_new_tokens = f.max_new;
    gp.stop_strings = stops;
    gp.n_stop_strings = n_stop;
    gp.ignore_eos = ignore_eos;
    gp.on_text = print_text;
    gp.user = &o;
    petrel_llm_stats s;
    st = petrel_llm_generate(llm, ids, n_ids, &gp, &s);
    if (o.bytes && o.last != '\n') fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) rc = cli_error("generate: write error on stdout");
    else if (st != PETREL_OK) rc = cli_error("%s", petrel_llm_error(llm));
    else if (ids_file && write_ids(ids_file, &o) != 0) rc = cli_error("generate: cannot write '%s'", ids_out);
    else
        fprintf(stderr,
                "prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s | first token %.0f ms | "
                "stop: %s | seed %" PRIu64 "\n",
                s.prompt_tokens, s.prefill_tok_s, s.generated_tokens, s.decode_tok_s, s.ttft_s * 1e3,
                petrel_llm_stop_str(s.stop), f.sampling.seed);
done:
    if (ids_file) fclose(ids_file);
    if (rc && ids_out) remove(ids_out);
    free(ids);
    free(o.ids);
    petrel_llm_free(llm);
    return rc;
}
