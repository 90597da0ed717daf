/*
** cmd_chat.c -- `petrel chat -m MODEL`: an interactive conversation with an
** exported chat model.  Each line on stdin is a user message; the answer
** streams to stdout.  The KV cache is kept across turns, so only the new
** turn's tokens are prefilled; the family's chat template (petrel_meta.json)
** frames each turn.  /reset starts over, /exit or end of input quits, and
** Ctrl-C stops an answer early.  Notes for the user ([...]) go to stderr.
*/
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t generating, interrupted;

/* Ctrl-C stops the answer being generated; at the prompt it quits. */
static void on_sigint(int sig) {
    if (generating) {
        interrupted = 1;
        return;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* sigaction, not signal(): the handler must stay installed after the
 * first Ctrl-C (signal() may reset it, System V style). */
static void catch_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
}

typedef struct out_state {
    size_t bytes;
    char last;
} out_state;

static bool print_text(const char *text, size_t len, void *user) {
    out_state *o = user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    o->bytes += len;
    o->last = text[len - 1];
    return !interrupted;
}

/* Encode the next turn; *need = cache positions the turn asks for. */
static petrel_status encode_turn(petrel_llm_t *llm, const char *system, const char *line, int32_t max_new,
                                 int32_t **ids, size_t *n, int64_t *need) {
    char *text = NULL;
    size_t len = 0;
    petrel_status st = petrel_llm_chat_prompt(llm, system, line, &text, &len);
    if (st != PETREL_OK) return st;
    st = petrel_tokenizer_encode(petrel_llm_tokenizer(llm), text, len, false, ids, n);
    free(text);
    if (st != PETREL_OK) return st;
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    *need = (int64_t)info.position + (info.pending_token >= 0) + (int64_t)*n + (max_new >= 0 ? max_new : 1);
    return PETREL_OK;
}

/* One user message and the model's answer.  Returns 0, or 1 after a
 * failure that ends the chat. */
static int turn(petrel_llm_t *llm, const char *system, const char *line, const cli_llm_flags *f, bool stats) {
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    int32_t *ids = NULL;
    size_t n = 0;
    int64_t need = 0;
    if (encode_turn(llm, system, line, f->max_new, &ids, &n, &need) != PETREL_OK)
        return cli_error("chat: %s", petrel_tokenizer_error(petrel_llm_tokenizer(llm)));
    if (need > info.max_cache_len && (info.position > 0 || info.pending_token >= 0)) {
        fprintf(stderr, "[the conversation no longer fits in the model's %d-token cache: starting a new one]\n",
                info.max_cache_len);
        free(ids);
        ids = NULL;
        if (petrel_llm_reset(llm) != PETREL_OK) return cli_error("%s", petrel_llm_error(llm));
        if (encode_turn(llm, system, line, f->max_new, &ids, &n, &need) != PETREL_OK)
            return cli_error("chat: %s", petrel_tokenizer_error(petrel_llm_tokenizer(llm)));
    }
    if (need > info.max_cache_len) {
        fprintf(stderr, "[this message is too long: the model's cache holds %d tokens]\n", info.max_cache_len);
        free(ids);
        return 0;
    }

    out_state o = {0};
    petrel_llm_gen_params gp = petrel_llm_gen_default_params();
    gp.max_new_tokens = f->max_new;
    gp.on_text = print_text;
    gp.user = &o;
    petrel_llm_stats s;
    interrupted = 0;
    generating = 1;
    petrel_status st = petrel_llm_generate(llm, ids, n, &gp, &s);
    generating = 0;
    free(ids);
    if (o.bytes && o.last != '\n') fputc('\n', stdout);
    fflush(stdout);
    if (st != PETREL_OK) {
        /* the cache may be half-written: start over rather than go on from it */
        cli_error("%s", petrel_llm_error(llm));
        fprintf(stderr, "[the conversation starts over]\n");
        return petrel_llm_reset(llm) == PETREL_OK ? 0 : cli_error("%s", petrel_llm_error(llm));
    }
    if (s.stop == PETREL_LLM_STOP_CALLBACK) fprintf(stderr, "[interrupted]\n");
    if (stats)
        fprintf(stderr, "[prompt %d tokens, %.1f tok/s | answer %d tokens, %.1f tok/s | first token %.0f ms | %d/%d cached]\n",
                s.prompt_tokens, s.prefill_tok_s, s.generated_tokens, s.decode_tok_s, s.ttft_s * 1e3, s.position,
                info.max_cache_len);
    if (s.stop == PETREL_LLM_STOP_CACHE_FULL) {
        fprintf(stderr, "[the model's %d-token cache is full: the conversation starts over]\n", info.max_cache_len);
        if (petrel_llm_reset(llm) != PETREL_OK) return cli_error("%s", petrel_llm_error(llm));
    }
    return 0;
}

/* `petrel chat` entry: returns the exit code. */
int cmd_chat(int argc, char **argv) {
    cli_llm_flags f;
    cli_llm_flags_init(&f);
    const char *system = NULL;
    bool stats = false;
    for (int i = 0; i < argc; i++) {
        int r = cli_llm_flag(&f, "chat", argc, argv, &i);
        if (r < 0) return 1;
        if (r > 0) continue;
        const char *a = argv[i];
        if (!strcmp(a, "--system")) {
            if (i + 1 >= argc) return cli_error("chat: --system needs a value");
            system = argv[++i];
        } else if (!strcmp(a, "--stats")) {
            stats = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_error("chat: unknown option '%s' (see 'petrel help')", a);
        } else {
            return cli_error("chat: unexpected argument '%s'", a);
        }
    }
    petrel_llm_t *llm = NULL;
    if (cli_llm_load(&llm, &f, "chat")) return 1;
    petrel_llm_info info;
    petrel_llm_get_info(&info, llm);
    bool tty = isatty(STDIN_FILENO);
    fprintf(stderr, "petrel chat: %s model, %d-token cache. /reset starts over, /exit quits%s.\n",
            info.family_name, info.max_cache_len, tty ? ", Ctrl-C stops an answer" : "");
    catch_sigint();

    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) {
            if (tty) fputc('\n', stdout);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        const char *msg = line + strspn(line, " \t");
        if (!*msg) continue;
        if (!strcmp(msg, "/exit") || !strcmp(msg, "/quit")) break;
        if (!strcmp(msg, "/reset")) {
            if (petrel_llm_reset(llm) != PETREL_OK) {
                rc = cli_error("%s", petrel_llm_error(llm));
                break;
            }
            fprintf(stderr, "[conversation cleared]\n");
            continue;
        }
        if (msg[0] == '/' && islower((unsigned char)msg[1])) {
            fprintf(stderr, "[unknown command %s: /reset starts over, /exit quits]\n", msg);
            continue;
        }
        if ((rc = turn(llm, system, msg, &f, stats)) != 0) break;
        if (tty) fputc('\n', stdout);
    }
    free(line);
    petrel_llm_free(llm);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) rc = cli_error("chat: write error on stdout");
    return rc;
}
