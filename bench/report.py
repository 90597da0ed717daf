#!/usr/bin/env python3
"""Turn the JSON results of one benchmark work directory (bench/gpu.sh,
bench/cpu.sh) into a markdown table, and optionally record it in
bench/RESULTS.md (newest first; a section with the same heading is replaced,
so per-model runs of one session update one table).

    report.py WORKDIR [--out TABLE.md] [--insert bench/RESULTS.md]

The work directory holds:
    env.json                  kind (gpu/cpu), date, machine, driver, commit, bandwidth
    petrel-MODEL-FORMAT.json  `petrel bench --json` (+ petrel-MODEL-FORMAT.mem: peak
                              GPU memory in MiB sampled with nvidia-smi, GPU runs)
    torch-MODEL.json          bench/torch_bench.py
    skip-MODEL-FORMAT.txt     why a row could not be measured (e.g. no --quant yet)
See bench/README.md for the columns.
"""

import argparse
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

FORMATS = ("fp32", "bf16", "int8", "int4")
ELEM_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "float16": 2}
CHECK_TOKENS = 32


def read_json(path):
    with open(path) as f:
        return json.load(f)


def fmt(x, digits=1, none="–"):
    return none if x is None else f"{x:,.{digits}f}"


def pct(x, floor) -> str:
    return f"{100 * x / floor:.0f} %" if floor else "–"


def prefill_cell(res: dict, n: int) -> str:
    for r in res.get("prefill", []):
        if r["tokens"] == n:
            return "skipped" if "skipped" in r else fmt(r["tok_s"], 0)
    return "–"


def results_prefill(res: dict) -> list:
    """The prefill rows of a petrel or torch_bench result."""
    if "modes" in res:
        return [r for m in res["modes"].values() for r in m.get("prefill", [])]
    return res.get("prefill", [])


def leading_match(a: list, b: list) -> int:
    """How many of the first CHECK_TOKENS tokens agree before the first difference."""
    n = 0
    for x, y in zip(a[:CHECK_TOKENS], b[:CHECK_TOKENS]):
        if x != y:
            break
        n += 1
    return n


def ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def match_cell(tokens, ref: dict, quantized: bool) -> str:
    """k/32 ✓ when all agree; at the first difference, which of torch's
    top choices the token taken there was and how far its logit lay below
    torch's pick (random weights give nearly flat logits, so a near tie
    can go either way in bf16)."""
    if ref is None or tokens is None:
        return "–"
    want = min(CHECK_TOKENS, len(ref["tokens"]), len(tokens))
    n = leading_match(tokens, ref["tokens"])
    if n == want:
        return f"{n}/{want} ✓"
    ru = ref.get("runner_up", {})
    nxt = ru.get("next") or [[s] for s in ru.get("second", [])]  # older results: the 2nd choice only
    gaps = ru.get("gaps") or [[g] for g in ru.get("margin", [])]
    if n < len(nxt) and tokens[n] in nxt[n]:
        r = nxt[n].index(tokens[n])
        why = f"then torch's {ordinal(r + 2)} choice, logit gap {gaps[n][r]:.3f}"
    else:
        why = f"then a token outside torch's top {len(nxt[n]) + 1 if n < len(nxt) else 1}"
    return f"{n}/{want}, {why}" + (" (quantized)" if quantized else "")


def floor_tok_s(cfg: dict, weight_read: float, kv_elem: int, res: dict, bw: float):
    """Tokens/s if every byte a decode step needs moved at `bw`; the KV
    cache at the average context of the measured decode run."""
    if not bw:
        return None
    ctx = res["prompt"] + res["gen"] / 2
    return bw / models.floor_bytes(cfg, weight_read, ctx, kv_elem)


def petrel_kv_elem(cfg: dict, res: dict) -> int:
    """Bytes per KV element of a petrel program: its state bytes over the
    cache's element count (the exporter keeps the cache in the model dtype)."""
    elems = models.kv_bytes_read(cfg, res["max_cache_len"], 1)
    return max(1, round(res["state_bytes"] / elems)) if elems else 2


def row(cols: list) -> str:
    return "| " + " | ".join(str(c) for c in cols) + " |"


def build(workdir: str) -> str:
    env = read_json(os.path.join(workdir, "env.json"))
    gpu = env["kind"] == "gpu"
    bw = env.get("bw_bytes_s")
    mem_head = "peak GPU mem GB" if gpu else "peak RSS GB"
    prefill_lengths = sorted({r["tokens"] for path in glob.glob(os.path.join(workdir, "*-*.json"))
                              for r in results_prefill(read_json(path))})
    head = ["model", "engine", "weights", "decode tok/s", "ms/token", "floor tok/s", "% of floor",
            *(f"prefill {n} tok/s" for n in prefill_lengths), "TTFT ms", mem_head,
            f"greedy = torch eager (first {CHECK_TOKENS})"]
    lines = [row(head), row(["---"] * len(head))]
    first_torch = None
    for name in models.MODELS:
        cfg = models.config(name)
        tpath = os.path.join(workdir, f"torch-{name}.json")
        torch_res = read_json(tpath) if os.path.exists(tpath) else None
        first_torch = first_torch or torch_res
        ref = torch_res["modes"].get("eager") if torch_res else None
        for f in FORMATS:
            p = os.path.join(workdir, f"petrel-{name}-{f}.json")
            skip = os.path.join(workdir, f"skip-{name}-{f}.txt")
            if os.path.exists(p):
                res = read_json(p)
                # the bytes a step reads (petrel bench's step_weight_bytes: the
                # embedding table, of which a token reads one row, left out);
                # older results: the program's weights in proportion
                wr = res.get("step_weight_bytes") or models.weight_bytes_read(cfg, 0, res["weight_bytes"])
                fl = floor_tok_s(cfg, wr, petrel_kv_elem(cfg, res), res, bw)
                mem = None
                mpath = p[:-5] + ".mem"
                if gpu and os.path.exists(mpath):
                    with open(mpath) as mf:
                        mem = float(mf.read().split()[0]) * 2**20 / 1e9
                elif not gpu:
                    mem = res["peak_rss_bytes"] / 1e9
                same_dtype = torch_res is not None and ELEM_BYTES.get(torch_res["dtype"]) == ELEM_BYTES.get(f)
                same_prompt = torch_res is not None and (res["prompt"], res["seed"]) == (torch_res["prompt"],
                                                                                         torch_res["seed"])
                lines.append(row([name, "petrel", f, fmt(res["decode_tok_s"]), fmt(res["decode_ms_per_token"], 2),
                                  fmt(fl, 0), pct(res["decode_tok_s"], fl),
                                  *(prefill_cell(res, n) for n in prefill_lengths), fmt(res["ttft_ms"]),
                                  fmt(mem, 2),
                                  match_cell(res["tokens"], ref, not same_dtype) if same_prompt else "– (other prompt)"]))
            elif os.path.exists(skip):
                with open(skip) as sf:
                    why = sf.read().strip()
                lines.append(row([name, "petrel", f, why] + ["–"] * (len(head) - 4)))
        if torch_res:
            dt = torch_res["dtype"]
            wr = models.weight_bytes_read(cfg, ELEM_BYTES[dt])
            for mode, res in torch_res["modes"].items():
                res = {**res, "prompt": torch_res["prompt"], "gen": torch_res["gen"]}
                fl = floor_tok_s(cfg, wr, ELEM_BYTES[dt], res, bw)
                engine = "torch eager" if mode == "eager" else f"torch.compile ({res['compile_mode']})"
                mem = res.get("peak_mem_bytes")
                lines.append(row([name, engine, {"bfloat16": "bf16", "float32": "fp32"}.get(dt, dt),
                                  fmt(res["decode_tok_s"]), fmt(res["decode_ms_per_token"], 2), fmt(fl, 0),
                                  pct(res["decode_tok_s"], fl),
                                  *(prefill_cell(res, n) for n in prefill_lengths), fmt(res["ttft_ms"]),
                                  fmt(mem / 1e9 if mem else None, 2),
                                  "reference" if mode == "eager" else match_cell(res["tokens"], ref, False)]))
    return header(env, first_torch, workdir) + "\n" + "\n".join(lines) + "\n"


def header(env: dict, torch_res, workdir: str) -> str:
    gpu = env["kind"] == "gpu"
    title = f"## {env['date']} — {env['machine']}"
    if env.get("driver"):
        title += f" (driver {env['driver']})"
    title += f", commit {env['commit']}"
    out = [title, ""]
    bw = env.get("bw_bytes_s")
    out.append(f"- bandwidth for the floor: {bw / 1e9:,.0f} GB/s ({env.get('bw_what', '')})" if bw
               else "- bandwidth: not measured")
    runs = sorted(glob.glob(os.path.join(workdir, "petrel-*.json")))
    if runs:
        r = read_json(runs[0])
        out.append(f"- petrel bench: prompt {r['prompt']} tokens, {r['gen']} generated, median of {r['reps']} "
                   f"after {r['warmup']} warm-up; KV cache {r['max_cache_len']} positions; "
                   f"backend {r['backend']}; random weights (seed 0) and prompt ids (seed {r['seed']})")
    if torch_res:
        modes = torch_res["modes"]
        c = modes.get("compile")
        text = (f"- torch {torch_res['torch']}, transformers {torch_res['transformers']}, attention "
                f"{torch_res['attn_implementation']}, static cache of {torch_res['max_cache_len']} positions")
        if c:
            text += (f"; torch.compile mode {c['compile_mode']}, fullgraph, dynamic={c.get('compile_dynamic', 'False')}, "
                     f"{'prefill compiled too' if c['compile_prefill'] else 'decode steps compiled, prefill eager as in generate()'}")
        out.append(text)
    for note in env.get("notes", []):
        out.append(f"- {note}")
    if gpu:
        out.append("- peak GPU memory: petrel = nvidia-smi used memory over the run minus before it "
                   "(includes the CUDA context); torch = torch.cuda.max_memory_allocated()")
    return "\n".join(out) + "\n"


def insert(results_path: str, table: str):
    """Put `table` first among the sections of RESULTS.md, replacing one with
    the same heading."""
    heading = table.splitlines()[0]
    text = open(results_path).read() if os.path.exists(results_path) else "# Benchmark results\n\n"
    parts = re.split(r"(?m)^(?=## )", text)
    intro, sections = parts[0], [s for s in parts[1:] if s.splitlines()[0] != heading]
    with open(results_path, "w") as f:
        f.write(intro.rstrip("\n") + "\n\n" + table.rstrip("\n") + "\n\n" + "".join(sections).rstrip("\n") + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir")
    p.add_argument("--out", help="also write the table here")
    p.add_argument("--insert", metavar="RESULTS.md", help="record the table as the newest section of this file")
    a = p.parse_args(argv)
    if not os.path.exists(os.path.join(a.workdir, "env.json")):
        print(f"report: {a.workdir}/env.json is missing (run bench/gpu.sh or bench/cpu.sh)", file=sys.stderr)
        return 1
    table = build(a.workdir)
    sys.stdout.write(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table)
    if a.insert:
        insert(a.insert, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
