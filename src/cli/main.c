/*
** main.c -- `petrel` command-line entry point: parse the verb and dispatch.
*/
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char usage[] =
    "usage: petrel <command> [options]\n"
    "\n"
    "commands:\n"
    "  compile IN.pt2 -o OUT.petrel [--backend cpu|cuda] [--dtype fp32|fp16|bf16]\n"
    "          [--quant SCHEME [--quant-embedding] [--quant-skip PATTERN]...]\n"
    "        lower an exported program into a petrel program file; --dtype converts a float32,\n"
    "        bf16 or fp16 export's weights, KV caches and float inputs to DTYPE as torch's\n"
    "        model.to(DTYPE) before the export would (its deliberate float32 upcasts stay);\n"
    "        --quant quantizes the weights of the linears and of an MoE's experts: SCHEME\n"
    "        int8|int4|int2[:sym][:gs=32|64|128] (asymmetric, group size 32 by default) or\n"
    "        nvfp4; --quant-embedding also the embedding (a tied LM head shares it);\n"
    "        --quant-skip keeps weights whose name matches PATTERN (fnmatch) float\n"
    "  run PROGRAM --inputs IN.safetensors --outputs OUT.safetensors [--backend cpu|cuda] [--threads N]\n"
    "        run a program (.pt2 or .petrel) once per --inputs/--outputs pair, in order,\n"
    "        keeping its state (KV caches) between the calls; --threads: CPU threads of the\n"
    "        kernels (default 0: one per CPU; results are the same for any count)\n"
    "  inspect PROGRAM\n"
    "        print a program's inputs, outputs, weights and op count\n"
    "  show FILE.safetensors\n"
    "        print the tensors of a safetensors file (e.g. run outputs)\n"
    "  tokenize --tokenizer TOKENIZER.json [--no-special]\n"
    "        print the token ids of the text on stdin, space-separated, as Hugging\n"
    "        Face tokenizers would (--no-special: without BOS/template tokens)\n"
    "  tokenize --tokenizer TOKENIZER.json --decode [--keep-special]\n"
    "        print the text of the token ids on stdin (special tokens left out\n"
    "        unless --keep-special); TOKENIZER may be gzip-compressed\n"
    "  generate -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
    "           [--repeat-penalty R] [--presence-penalty P] [--repeat-last-n N] [--seed S]\n"
    "           [--stop STR]... [--ignore-eos] [--ids-out FILE] [--raw | --chat [--system TEXT]] [--backend cpu|cuda]\n"
    "           [--threads N]\n"
    "        continue PROMPT with an exported LM (python/petrel_export.py) and print the text;\n"
    "        stats on stderr.  -n -1 (default): until the end of text or the KV cache is full;\n"
    "        --temp 0: greedy; defaults --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05, a fresh\n"
    "        seed per run; --raw: no BOS/special tokens added; --chat: use the chat template\n"
    "  chat -m MODEL [--system TEXT] [--stats] [sampling flags as for generate]\n"
    "        talk with a chat model: one message per line; /reset starts over, /exit quits\n"
    "  bench -m MODEL [--backend cpu|cuda] [--prompt N] [--gen N] [--prefill N[,N...]] [--reps R]\n"
    "        [--warmup W] [--seed S] [--threads N] [--json | --profile]\n"
    "        measure an exported LM at batch 1 with random prompt ids (seed S, default 0): prefill\n"
    "        tok/s for one chunk of each --prefill length (default 512,2048), time to first token and\n"
    "        greedy decode tok/s for --gen tokens (256) after a --prompt-token prompt (128); medians\n"
    "        of R runs (3) after W warm-up runs (1); --json: one JSON object (see bench/README.md);\n"
    "        --profile: then time each operator over a prefill and a decode run; without --backend,\n"
    "        the program's own placement\n"
    "  help  print this text\n"
    "\n"
    "example:\n"
    "  petrel run model.pt2 --inputs in.safetensors --outputs out.safetensors\n"
    "  petrel compile model.pt2 -o model-q4.petrel --quant int4 --quant-skip '*.down_proj.weight'\n"
    "  petrel generate -m model.pt2 -p \"Once upon a time\" -n 64\n"
    "  petrel bench -m model.petrel --prefill 512 --gen 64\n";

int cli_error(const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* names from the command line or a damaged file may hold newlines:
     * scripts get exactly one line */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    fprintf(stderr, "petrel: %s\n", msg);
    return 1;
}

int cli_check_output(const char *verb, const char *out, const char *const *ins, int nins, bool renamed) {
    struct stat so, si;
    if (stat(out, &so) != 0) return 0; /* a new file */
    if (S_ISDIR(so.st_mode) || (renamed && !S_ISREG(so.st_mode)))
        return cli_error("%s: cannot write '%s': not a regular file", verb, out);
    for (int i = 0; i < nins; i++)
        if (stat(ins[i], &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
            return cli_error("%s: the output '%s' would overwrite the input '%s'", verb, out, ins[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return 1;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(verb, "compile")) return cmd_compile(argc - 2, argv + 2);
    if (!strcmp(verb, "inspect")) return cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(verb, "show")) return cmd_show(argc - 2, argv + 2);
    if (!strcmp(verb, "tokenize")) return cmd_tokenize(argc - 2, argv + 2);
    if (!strcmp(verb, "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(verb, "chat")) return cmd_chat(argc - 2, argv + 2);
    if (!strcmp(verb, "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(verb, "help") || !strcmp(verb, "--help") || !strcmp(verb, "-h")) {
        fputs(usage, stdout);
        return 0;
    }
    return cli_error("unknown command '%s' (try 'petrel help')", verb);
}
