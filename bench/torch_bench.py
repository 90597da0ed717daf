#!/usr/bin/env python3
"""Hugging Face transformers baseline for bench/: the same random-weight
model petrel runs (python/petrel_export.py's loader, same seed, so the same
weights), the same prompt ids (splitmix64, as `petrel bench`), the same
measurements, with a static KV cache of the same length:

    eager     model.forward, no compilation
    compile   torch.compile(model.forward, mode=--compile-mode, fullgraph=True,
              dynamic=None: see bench/README.md)
              for the decode steps; the prefill stays eager as in
              model.generate() (--compile-prefill compiles it too)

Per mode: prefill tok/s for one chunk of each --prefill length into an empty
cache, time to first token (--prompt prefill + the first greedy token on the
host), greedy decode tok/s over the --gen tokens after it, peak memory
(torch.cuda.max_memory_allocated), and the greedy ids.  Medians of --reps
after --warmup runs; each time is read after torch.cuda.synchronize() (or a
.item() that waits for the token).  Also measures the device-to-device copy
bandwidth (1 GiB, median of 10) that bench/report.py divides the bytes per
token by.

    torch_bench.py --model Qwen3-0.6B [--dtype bfloat16] [--json out.json]

Writes one JSON object (to --json, else stdout); progress goes to stderr.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import models  # noqa: E402

MASK64 = (1 << 64) - 1
CHECK_TOKENS = 32  # greedy tokens compared with petrel's (bench/report.py)


def prompt_ids(n: int, seed: int, vocab: int) -> list:
    """The ids `petrel bench` draws: splitmix64 from `seed`, modulo vocab."""
    out, state = [], seed
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append((z ^ (z >> 31)) % vocab)
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=list(models.MODELS), help="required unless --bandwidth-only")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke test only)")
    p.add_argument("--weights-seed", type=int, default=0, help="seed of the random weights (as petrel_export.py --seed)")
    p.add_argument("--max-cache-len", type=int, default=2048, help="static KV-cache positions (as the exported program)")
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--gen", type=int, default=256)
    p.add_argument("--prefill", default="512,2048", help="comma-separated lengths, or 'none'")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="prompt-id seed (as petrel bench --seed)")
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--compile-mode", default="reduce-overhead",
                   help="torch.compile mode: reduce-overhead (CUDA graphs; default), default, max-autotune, ...")
    p.add_argument("--compile-prefill", action="store_true", help="compile the prefill calls too")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the copy-bandwidth measurement")
    p.add_argument("--bandwidth-only", action="store_true", help="only measure the copy bandwidth")
    p.add_argument("--json", metavar="FILE", help="write the result here (default: stdout)")
    a = p.parse_args(argv)
    if not a.model and not a.bandwidth_only:
        p.error("--model is required")
    a.prefill = [] if a.prefill == "none" else [int(x) for x in a.prefill.split(",")]
    a.modes = a.modes.split(",")
    if any(m not in ("eager", "compile") for m in a.modes):
        p.error("--modes: eager and/or compile")
    if a.gen < 2 or a.prompt < 1 or a.reps < 1 or a.warmup < 0 or any(n < 1 for n in a.prefill):
        p.error("--gen >= 2, --prompt >= 1, --reps >= 1, --warmup >= 0, prefill lengths >= 1")
    if a.prompt + a.gen > a.max_cache_len:
        p.error("--prompt + --gen must fit in --max-cache-len")
    return a


def log(msg: str):
    print(f"torch_bench: {msg}", file=sys.stderr, flush=True)


def load(a):
    """The model on the device: petrel_export.py's random-weight loader with
    the same config and seed, so its weights are the exported ones."""
    import petrel_export

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            json.dump(models.config(a.model), f)
        ns = argparse.Namespace(model=None, config=path, seed=a.weights_seed, dtype=a.dtype, family=None,
                                max_cache_len=a.max_cache_len)
        lm, config = petrel_export.load_model(ns)
    lm.generation_config.cache_implementation = "static"
    return lm.to(a.device), config


class Runner:
    """One static cache and a step function (eager or compiled) over it."""

    def __init__(self, lm, a, compiled: bool):
        import torch
        from transformers import StaticCache

        self.torch, self.lm, self.dev = torch, lm, torch.device(a.device)
        self.cache = StaticCache(config=lm.config, max_cache_len=a.max_cache_len)
        self.cudagraphs = compiled and a.compile_mode == "reduce-overhead" and self.dev.type == "cuda"
        self.decode_fn = None
        # allocate the cache outside any compiled region (its tensors must
        # keep their addresses for CUDA graphs), then start from zero
        self.forward(lm.forward, [0], 0)
        self.cache.reset()
        fwd = lm.forward
        if compiled:
            fwd = torch.compile(lm.forward, mode=None if a.compile_mode == "default" else a.compile_mode,
                                fullgraph=True, dynamic=None)
        self.decode_fn = fwd
        self.prefill_fn = fwd if a.compile_prefill else lm.forward

    def forward(self, fn, ids: list, pos: int):
        """Logits (vocab,) of the last of `ids` fed at cache position pos."""
        torch = self.torch
        x = torch.tensor([ids], dtype=torch.long, device=self.dev)
        p = torch.arange(pos, pos + len(ids), dtype=torch.long, device=self.dev)
        if self.cudagraphs and fn is self.decode_fn:
            torch.compiler.cudagraph_mark_step_begin()
        # position_ids as generate() passes them: without them Gemma 3 derives
        # them from the cache's Python-int length, and torch.compile
        # recompiles the step for every position
        with torch.no_grad():
            out = fn(input_ids=x, cache_position=p, position_ids=p.unsqueeze(0), past_key_values=self.cache,
                     use_cache=True, logits_to_keep=1)
        return out.logits[0, -1]

    def sync(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def prefill(self, ids: list) -> float:
        """Seconds for one chunk of `ids` into an empty cache."""
        self.cache.reset()
        self.sync()
        t0 = time.perf_counter()
        self.forward(self.prefill_fn, ids, 0)
        self.sync()
        return time.perf_counter() - t0

    def generate(self, ids: list, n: int):
        """Greedy run from an empty cache: (ttft_s, decode tok/s, tokens)."""
        self.cache.reset()
        self.sync()
        t0 = time.perf_counter()
        tok = int(self.forward(self.prefill_fn, ids, 0).argmax())  # .item() waits for the device
        t_first = time.perf_counter()
        tokens, pos = [tok], len(ids)
        for _ in range(n - 1):
            tok = int(self.forward(self.decode_fn, [tok], pos).argmax())
            tokens.append(tok)
            pos += 1
        t_end = time.perf_counter()
        return t_first - t0, (n - 1) / (t_end - t_first), tokens

    def runner_up(self, ids: list, n: int, k: int = 8) -> dict:
        """An untimed greedy run of n tokens that also records, per step,
        the next k - 1 most likely ids and their logit distances to the
        chosen one: with random weights the logits are nearly flat, so two
        engines may pick differently at a near tie without either being
        wrong ("second"/"margin" are the first of them)."""
        self.cache.reset()
        top, gaps, pos = [], [], len(ids)
        logits = self.forward(self.prefill_fn, ids, 0)
        for _ in range(n):
            x = logits.float()
            tok = int(x.argmax())  # as in generate(): the lowest id on ties
            best = float(x[tok])
            x[tok] = float("-inf")
            ids_k, gaps_k = [], []
            for _ in range(k - 1):
                i = int(x.argmax())
                ids_k.append(i)
                gaps_k.append(best - float(x[i]))
                x[i] = float("-inf")
            top.append(ids_k)
            gaps.append(gaps_k)
            logits = self.forward(self.decode_fn, [tok], pos)
            pos += 1
        return {"second": [t[0] for t in top], "margin": [g[0] for g in gaps], "next": top, "gaps": gaps}


def bench_mode(lm, a, mode: str, ids: list) -> dict:
    torch = __import__("torch")
    cuda = a.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    r = Runner(lm, a, compiled=(mode == "compile"))
    # compilation happens in the first calls: keep it out of the medians
    warmup = max(a.warmup, 1) if mode == "compile" else a.warmup
    out = {"prefill": []}
    for n in a.prefill:
        if n > a.max_cache_len:
            out["prefill"].append({"tokens": n, "skipped": f"the static cache holds {a.max_cache_len} positions"})
            continue
        times = [r.prefill(ids[:n]) for _ in range(warmup + a.reps)][warmup:]
        s = statistics.median(times)
        out["prefill"].append({"tokens": n, "ms": s * 1e3, "tok_s": n / s})
        log(f"{mode}: prefill {n}: {n / s:.1f} tok/s")
    # the first generate call also compiles (and captures) the decode step
    runs = [r.generate(ids[:a.prompt], a.gen) for _ in range(warmup + a.reps)]
    if mode == "compile":
        out["compile_mode"] = a.compile_mode
        out["compile_prefill"] = a.compile_prefill
        out["compile_dynamic"] = "None"
        out["setup_s"] = time.perf_counter() - t0  # includes the compilation in the warm-up runs
    measured = runs[warmup:]
    out["ttft_ms"] = statistics.median(x[0] for x in measured) * 1e3
    out["decode_tok_s"] = statistics.median(x[1] for x in measured)
    out["decode_ms_per_token"] = 1e3 / out["decode_tok_s"]
    out["tokens"] = measured[0][2]
    out["repeatable"] = all(x[2] == out["tokens"] for x in measured)
    out["runner_up"] = r.runner_up(ids[:a.prompt], min(a.gen, CHECK_TOKENS))
    if cuda:
        out["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
    log(f"{mode}: ttft {out['ttft_ms']:.2f} ms, decode {out['decode_tok_s']:.1f} tok/s")
    return out


def copy_bandwidth(device: str, nbytes: int = 1 << 30, reps: int = 10) -> float:
    """Device-to-device copy bandwidth in bytes/s, read + write counted
    (2 x nbytes per copy): the median of `reps` timed copies."""
    import torch

    a = torch.empty(nbytes, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    a.fill_(1)
    b.copy_(a)  # warm-up
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return 2 * nbytes / statistics.median(times)


def main(argv=None) -> int:
    a = parse_args(argv if argv is not None else sys.argv[1:])
    warnings.filterwarnings("ignore")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16)
    cuda = a.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("torch_bench: CUDA is not available (use --device cpu for a smoke test)", file=sys.stderr)
        return 1
    if a.bandwidth_only:
        if not cuda:
            print("torch_bench: --bandwidth-only needs a CUDA device", file=sys.stderr)
            return 1
        res = {"gpu": torch.cuda.get_device_name(), "copy_bw_bytes_s": copy_bandwidth(a.device),
               "what": "device-to-device copy of 1 GiB, read + write counted, median of 10"}
        return write(res, a.json)
    res = {"engine": "torch", "model": a.model, "hf_id": models.MODELS[a.model][0], "dtype": a.dtype,
           "device": a.device, "torch": torch.__version__, "transformers": transformers.__version__,
           "max_cache_len": a.max_cache_len, "prompt": a.prompt, "gen": a.gen, "reps": a.reps,
           "warmup": a.warmup, "seed": a.seed, "weights_seed": a.weights_seed,
           "attn_implementation": None, "modes": {}}
    if cuda:
        res["gpu"] = torch.cuda.get_device_name()
        if not a.no_bandwidth:
            res["copy_bw_bytes_s"] = copy_bandwidth(a.device)
            log(f"device-to-device copy: {res['copy_bw_bytes_s'] / 1e9:.0f} GB/s")
    t0 = time.perf_counter()
    lm, config = load(a)
    res["load_s"] = time.perf_counter() - t0
    res["attn_implementation"] = lm.config._attn_implementation
    vocab = config.get_text_config().vocab_size
    ids = prompt_ids(max([a.prompt] + a.prefill), a.seed, vocab)
    for mode in a.modes:
        res["modes"][mode] = bench_mode(lm, a, mode, ids)
    return write(res, a.json)


def write(res: dict, path) -> int:
    text = json.dumps(res, indent=1)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
