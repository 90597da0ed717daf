/*
** chat.c -- petrel_llm_chat_prompt: the chat templates of the supported
** families, written out in C (a Jinja engine is not needed for these).
** Part of the LLM runner; uses the session only through petrel_llm.h.
**
** Each template is what the family's tokenizer_config.json renders with
** add_generation_prompt=True, cut into pieces so that one user turn can be
** appended to a conversation whose earlier turns are already in the KV
** cache: a later turn starts right after the token that ended the model's
** previous answer.
*/
#include <ctype.h>
#include <string.h>
#include <time.h>

#include "../../core/core.h"
#include "petrel_llm.h"

typedef struct chat_template {
    bool bos;                /* the conversation starts with the BOS token */
    const char *sys_pre;     /* around a system message; NULL: it is put in */
    const char *sys_post;    /*   front of the first user message instead */
    const char *user_pre;    /* around a user message */
    const char *user_post;
    const char *gen;         /* the generation prompt (assistant header) */
    const char *eot;         /* the token the model ends its answer with */
    const char *after_eot;   /* written between that token and the next turn */
    bool trim;               /* user messages are stripped of surrounding whitespace */
    bool trim_system;        /* ... and the system message */
} chat_template;

static const chat_template llama3 = {
    .bos = true,
    .sys_pre = "<|start_header_id|>system<|end_header_id|>\n\n",
    .sys_post = "<|eot_id|>",
    .user_pre = "<|start_header_id|>user<|end_header_id|>\n\n",
    .user_post = "<|eot_id|>",
    .gen = "<|start_header_id|>assistant<|end_header_id|>\n\n",
    .eot = "<|eot_id|>",
    .after_eot = "",
    .trim = true,
    .trim_system = true,
};

/* Qwen3 with thinking left on (the template's default). */
static const chat_template qwen3 = {
    .sys_pre = "<|im_start|>system\n",
    .sys_post = "<|im_end|>\n",
    .user_pre = "<|im_start|>user\n",
    .user_post = "<|im_end|>\n",
    .gen = "<|im_start|>assistant\n",
    .eot = "<|im_end|>",
    .after_eot = "\n",
};

static const chat_template gemma3 = {
    .bos = true,
    .user_pre = "<start_of_turn>user\n",
    .user_post = "<end_of_turn>\n",
    .gen = "<start_of_turn>model\n",
    .eot = "<end_of_turn>",
    .after_eot = "\n",
    .trim = true,
};

static const chat_template phi3 = {
    .sys_pre = "<|system|>\n",
    .sys_post = "<|end|>\n",
    .user_pre = "<|user|>\n",
    .user_post = "<|end|>\n",
    .gen = "<|assistant|>\n",
    .eot = "<|end|>",
    .after_eot = "\n",
};

/* Phi-4-mini: the same tokens without newlines. */
static const chat_template phi4 = {
    .sys_pre = "<|system|>",
    .sys_post = "<|end|>",
    .user_pre = "<|user|>",
    .user_post = "<|end|>",
    .gen = "<|assistant|>",
    .eot = "<|end|>",
    .after_eot = "",
};

/* A growing string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void add(sbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = pt_realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void adds(sbuf *b, const char *s) { add(b, s, strlen(s)); }

/* Llama 3.1+ templates always open the system message with a knowledge
 * cutoff and a date: 3.1 a fixed one, 3.2 today's (strftime_now) when the
 * renderer has a clock, as Hugging Face's does.  Llama 3.0's has neither. */
static void add_llama_preamble(sbuf *b, const char *tmpl) {
    char date[32] = "26 Jul 2024";
    if (strstr(tmpl, "strftime_now")) {
        time_t now = time(NULL);
        struct tm tm;
        if (localtime_r(&now, &tm)) strftime(date, sizeof date, "%d %b %Y", &tm);
    }
    adds(b, "Cutting Knowledge Date: December 2023\nToday Date: ");
    adds(b, date);
    adds(b, "\n\n");
}

/* Add a message, stripped of surrounding whitespace when the template does (Jinja's trim). */
static void add_msg(sbuf *b, const char *s, bool trim) {
    size_t n = strlen(s);
    if (trim) {
        while (n && isspace((unsigned char)*s)) s++, n--;
        while (n && isspace((unsigned char)s[n - 1])) n--;
    }
    add(b, s, n);
}

/* The default system message a ChatML template writes when the
 * conversation has none (SmolLM2: "You are a helpful AI assistant named
 * SmolLM, ..."), copied into buf; false when the template has no literal
 * default (Qwen3 writes the caller's system message only). */
static bool chatml_default_system(const char *tmpl, char *buf, size_t cap) {
    const char *key = "<|im_start|>system\n";
    const char *p = tmpl ? strstr(tmpl, key) : NULL;
    if (!p) return false;
    p += strlen(key);
    const char *end = strstr(p, "<|im_end|>");
    if (!end || (size_t)(end - p) >= cap || end == p) return false;
    for (const char *q = p; q < end; q++)
        if (*q == '\'' || *q == '{' || *q == '}' || *q == '+') return false; /* an expression, not text */
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = 0;
    return true;
}

static const chat_template *pick(const petrel_llm_info *info) {
    /* The model's own template decides the markup: a Llama-architecture
     * model may well be a ChatML chat model (SmolLM2). */
    if (info->chat_template && strstr(info->chat_template, "<|im_start|>")) return &qwen3;
    if (info->chat_template && strstr(info->chat_template, "<|start_header_id|>")) return &llama3;
    if (info->chat_template && strstr(info->chat_template, "<start_of_turn>")) return &gemma3;
    switch (info->family) {
    case PETREL_LLM_FAMILY_LLAMA: return &llama3;
    case PETREL_LLM_FAMILY_QWEN3:
    case PETREL_LLM_FAMILY_QWEN3_MOE: return &qwen3;
    case PETREL_LLM_FAMILY_GEMMA3: return &gemma3;
    case PETREL_LLM_FAMILY_PHI3:
        /* Phi-3's template writes '<|user|>\n', Phi-4-mini's '<|' + role + '|>'. */
        return info->chat_template && !strstr(info->chat_template, "<|user|>") &&
                       strstr(info->chat_template, "'<|' + message['role'] + '|>'")
                   ? &phi4
                   : &phi3;
    default: return &llama3;
    }
}

petrel_status petrel_llm_chat_prompt(petrel_llm_t *llm, const char *system, const char *user, char **text,
                                     size_t *len) {
    if (!llm || !user || !text) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_llm_chat_prompt: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    petrel_llm_info info;
    PT_TRY(petrel_llm_get_info(&info, llm));
    const chat_template *t = pick(&info);
    bool first = info.position == 0 && info.pending_token < 0;
    char default_system[512];
    if (!system && t == &qwen3 && chatml_default_system(info.chat_template, default_system, sizeof default_system))
        system = default_system;
    sbuf b = {0};
    if (first) {
        const char *bos = info.bos_id >= 0 ? petrel_tokenizer_id_to_token(petrel_llm_tokenizer(llm), info.bos_id) : NULL;
        /* (some Phi-3 templates start with the BOS too) */
        if (bos && (t->bos || (info.chat_template && strstr(info.chat_template, "bos_token")))) adds(&b, bos);
        bool preamble = t == &llama3 && info.chat_template && strstr(info.chat_template, "Cutting Knowledge Date");
        if (t->sys_pre && (system || preamble)) {
            adds(&b, t->sys_pre);
            if (preamble) add_llama_preamble(&b, info.chat_template);
            if (system) add_msg(&b, system, t->trim_system);
            adds(&b, t->sys_post);
        }
    } else {
        /* close the previous answer unless the model did */
        if (!info.last_stop_eos) adds(&b, t->eot);
        adds(&b, t->after_eot);
    }
    adds(&b, t->user_pre);
    if (first && system && !t->sys_pre) { /* Gemma 3: system text opens the first user turn */
        add_msg(&b, system, t->trim_system);
        adds(&b, "\n\n");
    }
    add_msg(&b, user, t->trim);
    adds(&b, t->user_post);
    adds(&b, t->gen);
    if (b.oom || !b.s) {
        pt_free(b.s);
        return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    }
    *text = b.s;
    if (len) *len = b.len;
    return PETREL_OK;
}
