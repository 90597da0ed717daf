"""Every kernel of a decode step, timed inside the runner's real loop.

Runs trace_step.so (tests/gpu/trace_step.c: a 128-token prompt, then N
greedy tokens through the public API) under torch.profiler's CUDA activity
tracer, which records each kernel node of the captured decode graph with
its device start and end (copies and fills too, as "memcpy" / "memset").  Steps are cut at the output argmax kernel.
Prints, for the steps after the first few, the median step time and per
kernel name: launches per step, median time per step, the median idle
gap before those launches (end of the kernel before to its start; negative
when programmatic dependent launch overlaps them), and its credit: the
time from the end of the kernel before to its own end, which is what the
step would lose without it when kernels overlap (a step's credits add up
to its time from the first kernel's start).  The JSON's sequence gives each
position of the middle step with its median credit over the steps.

usage: python tests/gpu/trace_step.py trace_step.so MODEL.petrel [tokens=64] [--json OUT.json]
"""
import ctypes
import json
import re
import statistics
import sys
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile


def short(name, cat="kernel"):
    if cat != "kernel":  # a copy or a fill inside the graph
        return "memset" if cat == "gpu_memset" else "memcpy"
    name = re.sub(r"^void ", "", name).replace("(anonymous namespace)::", "")
    name = re.split(r"[<(]", name, maxsplit=1)[0]
    return name.strip() or "?"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    if out_json in args:
        args.remove(out_json)
    lib_path, model = args[0], args[1]
    tokens = int(args[2]) if len(args) > 2 else 64
    torch.cuda.init()
    lib = ctypes.CDLL(lib_path)
    lib.trace_load.argtypes = [ctypes.c_char_p]
    if lib.trace_load(model.encode()) != 0 or lib.trace_generate(16) != 0:
        sys.exit("trace_step: load or warm-up failed")
    t0 = time.perf_counter()
    if lib.trace_generate(tokens) != 0:
        sys.exit("trace_step: generate failed")
    plain_s = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        if lib.trace_generate(tokens) != 0:
            sys.exit("trace_step: generate failed")
        traced_s = time.perf_counter() - t0
        torch.cuda.synchronize()
    print(f"trace_step: prompt + {tokens} tokens took {plain_s * 1e3:.2f} ms untraced, {traced_s * 1e3:.2f} ms traced")
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        trace = json.load(open(f.name))
    ks = sorted((e for e in trace["traceEvents"] if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")),
                key=lambda e: e["ts"])
    if not ks:
        sys.exit("trace_step: no kernels recorded")
    # steps: the kernels after one argmax up to the next
    steps, cur = [], None
    for e in ks:
        n = short(e["name"], e.get("cat"))
        if cur is not None:
            cur.append((n, e["ts"], e["dur"]))
        if "argmax" in n:
            if cur is not None:
                steps.append(cur)
            cur = []
    steps = steps[4:]  # the first ones after the prompt
    if not steps:
        sys.exit(f"trace_step: no decode steps found among {len(ks)} kernels")
    def credits(t):  # each kernel's: end of the kernel before (the first: its start) to its own end
        return [t[0][2]] + [t[i][1] + t[i][2] - (t[i - 1][1] + t[i - 1][2]) for i in range(1, len(t))]

    per_step = []
    rows = {}
    for s in steps:
        per_step.append(s[-1][1] + s[-1][2] - s[0][1])
        agg = {}
        prev_end = None
        for (n, ts, dur), c in zip(s, credits(s)):
            a = agg.setdefault(n, [0, 0.0, 0.0, 0.0])
            a[0] += 1
            a[1] += dur
            if prev_end is not None:
                a[2] += ts - prev_end
            a[3] += c
            prev_end = ts + dur
        for n, a in agg.items():
            rows.setdefault(n, []).append(a)
    step_us = statistics.median(per_step)
    print(f"trace_step: {len(steps)} steps, median {step_us:.1f} us from the first kernel's start to the argmax's end "
          f"({len(ks)} kernels, copies and fills traced)")
    print(f"{'kernel':40s} {'per step':>8s} {'us/step':>9s} {'gaps us':>8s} {'credit us':>9s}")
    table = []
    for n, v in sorted(rows.items(), key=lambda kv: -statistics.median(x[1] for x in kv[1])):
        cnt = statistics.median(x[0] for x in v)
        t = statistics.median(x[1] for x in v)
        g = statistics.median(x[2] for x in v)
        c = statistics.median(x[3] for x in v)
        table.append({"kernel": n, "per_step": cnt, "us": t, "gap_us": g, "credit_us": c})
        print(f"{n[:40]:40s} {cnt:8.0f} {t:9.1f} {g:8.1f} {c:9.1f}")
    busy = sum(r["us"] for r in table)
    gaps = sum(r["gap_us"] for r in table)
    credit = sum(r["credit_us"] for r in table)
    print(f"{'sum':40s} {'':8s} {busy:9.1f} {gaps:8.1f} {credit:9.1f}")
    # one step in order, for the sequence
    s = steps[len(steps) // 2]
    same = [t for t in steps if [k[0] for k in t] == [k[0] for k in s]]  # steps of the same kernels
    cred = [statistics.median(c) for c in zip(*(credits(t) for t in same))]
    seq = []
    prev_end = None
    for i, (n, ts, dur) in enumerate(s):
        seq.append({"kernel": n, "us": dur, "gap_us": 0.0 if prev_end is None else ts - prev_end,
                    "credit_us": cred[i]})
        prev_end = ts + dur
    if out_json:
        json.dump({"step_us": step_us, "steps": len(steps), "table": table, "sequence": seq}, open(out_json, "w"),
                  indent=1)


if __name__ == "__main__":
    main()
