#!/usr/bin/env python3
"""Compare two builds of petrel on the same programs: `petrel bench --json`
for each model with build A and build B in turn, for several rounds (the
order alternating from round to round, so a machine that drifts favours
neither), then one markdown table: decode tok/s of every run, the ratio
of the medians, time to first token, prefill, and whether the greedy ids
of the two builds agree.

    bench/ab.py [options] A B MODEL...

A and B: a build directory holding `petrel` (build, build-cuda, ...), or
a git revision, built once into build/ab/REV (a git worktree of this
repository and a Release build; --cmake passes extra cmake flags, such as
-DPETREL_CUDA=ON).  MODEL: a .petrel or .pt2 file.  Options:

    --rounds N        rounds per model (default 2)
    --bench=ARGS      extra flags for `petrel bench` (one string, e.g.
                      "--backend cuda --prompt 128 --gen 256 --reps 3")
    --cmake=ARGS      extra cmake flags for builds of revisions (with "=":
                      the flags start with a dash)
    -o FILE           also write the table to FILE

Needs only Python 3 and what petrel's own build needs.  Exit 1 when a run
fails (its message is printed), 2 on bad usage.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(msg):
    print(f"ab: {msg}", file=sys.stderr, flush=True)


def fail(msg, code=1):
    say(msg)
    sys.exit(code)


def build_revision(rev, cmake_args):
    """build/ab/REV/petrel for a git revision (built once)."""
    r = subprocess.run(["git", "-C", TOP, "rev-parse", "--verify", "--quiet", rev + "^{commit}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"'{rev}' is neither a build directory with petrel nor a git revision", 2)
    sha = r.stdout.strip()[:12]
    base = os.path.join(TOP, "build", "ab")
    src, out = os.path.join(base, "src-" + sha), os.path.join(base, sha)
    if os.path.exists(os.path.join(out, "petrel")):
        return out
    os.makedirs(base, exist_ok=True)
    if not os.path.exists(src):
        say(f"{rev}: a worktree at {src}")
        if subprocess.run(["git", "-C", TOP, "worktree", "add", "--detach", src, sha]).returncode != 0:
            fail(f"{rev}: git worktree add failed")
    say(f"{rev}: building into {out}")
    cfg = ["cmake", "-S", src, "-B", out, "-DCMAKE_BUILD_TYPE=Release"] + shlex.split(cmake_args)
    if subprocess.run(cfg, stdout=subprocess.DEVNULL).returncode != 0:
        fail(f"{rev}: cmake configure failed")
    jobs = str(os.cpu_count() or 2)
    if subprocess.run(["cmake", "--build", out, "-j", jobs, "--target", "petrel_cli"]).returncode != 0:
        fail(f"{rev}: build failed")
    return out


def petrel_of(arg, cmake_args):
    """The petrel binary of a build directory or a revision."""
    if os.path.isdir(arg):
        exe = os.path.join(arg, "petrel")
        if not os.access(exe, os.X_OK):
            fail(f"{arg} holds no petrel binary (build it first)", 2)
        return exe
    return os.path.join(build_revision(arg, cmake_args), "petrel")


def bench(exe, model, extra):
    """One `petrel bench --json` run: its JSON object."""
    cmd = [exe, "bench", "-m", model, "--json"] + shlex.split(extra)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)}: {(r.stderr.strip().splitlines() or ['exit %d' % r.returncode])[-1]}")
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        fail(f"{' '.join(cmd)}: not JSON: {r.stdout[:200]!r}")


def ids_note(a, b):
    """Whether the greedy ids of two runs agree, or where they part."""
    ta, tb = a.get("tokens") or [], b.get("tokens") or []
    if ta == tb:
        return f"equal ({len(ta)})"
    n = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
    return f"differ from token {n}"


def fmt(values, digits=2):
    return " / ".join(f"{v:,.{digits}f}" for v in values)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], usage="bench/ab.py [options] A B MODEL...")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bench", default="")
    ap.add_argument("--cmake", default="")
    ap.add_argument("-o", dest="out")
    args = ap.parse_args()
    if args.rounds < 1:
        fail("--rounds must be at least 1", 2)
    for m in args.models:
        if not os.path.isfile(m):
            fail(f"no model file '{m}'", 2)
    exe = {"A": petrel_of(args.a, args.cmake), "B": petrel_of(args.b, args.cmake)}
    rows = []
    for m in args.models:
        runs = {"A": [], "B": []}
        for r in range(args.rounds):
            for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
                say(f"{os.path.basename(m)}: round {r + 1}, {side}")
                runs[side].append(bench(exe[side], m, args.bench))
        dec = {s: [j.get("decode_tok_s") or 0.0 for j in runs[s]] for s in runs}
        ttft = {s: [j.get("ttft_ms") or 0.0 for j in runs[s]] for s in runs}
        pre = {s: [p["tok_s"] for j in runs[s] for p in j.get("prefill") or [] if p.get("tok_s")] for s in runs}
        med_a = statistics.median(dec["A"])
        ratio = f"{statistics.median(dec['B']) / med_a:.3f}" if med_a > 0 else "-"
        rows.append([os.path.basename(m), runs["A"][0].get("backend", "?"), fmt(dec["A"]), fmt(dec["B"]), ratio,
                     fmt(ttft["A"]) + " -> " + fmt(ttft["B"]),
                     (fmt(pre["A"], 1) + " -> " + fmt(pre["B"], 1)) if pre["A"] else "-",
                     ids_note(runs["A"][0], runs["B"][0])])
    head = ["model", "backend", "A decode tok/s", "B decode tok/s", "B / A", "first token ms (A -> B)",
            "prefill tok/s (A -> B)", "greedy ids"]
    lines = [f"A = {args.a}, B = {args.b}; `petrel bench {args.bench}`, {args.rounds} rounds, alternating", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
