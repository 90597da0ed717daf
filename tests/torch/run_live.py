#!/usr/bin/env python3
"""Live torch tier (`make test-torch`): export fresh programs with torch and
check that petrel reproduces torch's outputs.

Fixtures are made by tools/fixtures/make_fixtures.py with a new random seed
each run (printed, so a failure can be replayed with --seed) in a temporary
directory.  Each fixture then runs in one petrel process, all its calls in
order on one loaded program:

    $PETREL run DIR/model.pt2 --inputs step0.in.safetensors --outputs TMP/step0.out.safetensors \\
                              [--inputs step1.in.safetensors --outputs TMP/step1.out.safetensors ...]

and every output is compared with torch's: same names, shapes and dtypes;
integer and bool outputs exactly equal; floating outputs within the
fixture's relative L2 tolerance (NaN never passes).  Prints one line per
fixture and a summary; exits 1 if any fixture failed.

    PETREL=build/petrel run_live.py [--only SUBSTRING ...] [--seed N] [--keep DIR]
    PETREL=build/petrel run_live.py --fixtures tests/fixtures   # check existing fixtures
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "fixtures"))

import make_fixtures  # noqa: E402  (after the path set-up)
from safetensors.torch import load_file  # noqa: E402

PETREL_TIMEOUT = 300  # seconds for all calls of one fixture


def run_fixture(petrel: str, fdir: str, entry: dict, work: str) -> str | None:
    """Run one fixture through petrel; None if it matches torch, else why not."""
    name, steps = entry["name"], entry["steps"]
    out_dir = os.path.join(work, name)
    os.makedirs(out_dir, exist_ok=True)
    cmd = [petrel, "run", os.path.join(fdir, "model.pt2")]
    for k in range(steps):
        cmd += ["--inputs", os.path.join(fdir, f"step{k}.in.safetensors"),
                "--outputs", os.path.join(out_dir, f"step{k}.out.safetensors")]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=PETREL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"petrel timed out after {PETREL_TIMEOUT}s"
    if p.returncode != 0:
        lines = (p.stderr.strip() or p.stdout.strip() or "(no message)").splitlines()
        return f"petrel exited with {p.returncode}: {' | '.join(lines[-3:])}"
    for k in range(steps):
        got_path = os.path.join(out_dir, f"step{k}.out.safetensors")
        if not os.path.exists(got_path):
            return f"step {k}: petrel wrote no outputs"
        try:
            got = load_file(got_path)
        except Exception as e:
            return f"step {k}: unreadable outputs: {e}"
        want = load_file(os.path.join(fdir, f"step{k}.out.safetensors"))
        if set(got) != set(want):
            return f"step {k}: output names {sorted(got)} != {sorted(want)}"
        for key in sorted(want, key=lambda s: int(s.rsplit("_", 1)[1])):
            why = make_fixtures.compare(got[key], want[key], entry["tol"])
            if why:
                return f"step {k} {key}: {why}"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="SUBSTRING", help="only cases whose name contains one of these")
    ap.add_argument("--seed", type=int, help="fixture seed (default: a new one, printed)")
    ap.add_argument("--keep", metavar="DIR", help="write fixtures and petrel outputs under DIR and keep them")
    ap.add_argument("--fixtures", metavar="DIR", help="check the fixtures in DIR (with its manifest.json) "
                                                       "instead of making new ones")
    ap.add_argument("--no-verify", action="store_true", help="do not re-check new archives with torch.export.load")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="petrel processes at a time")
    a = ap.parse_args(argv)

    petrel = os.environ.get("PETREL")
    if not petrel:
        print("run_live: set PETREL to the petrel binary", file=sys.stderr)
        return 2
    petrel = os.path.abspath(petrel)
    if not os.access(petrel, os.X_OK):
        print(f"run_live: {petrel} is not an executable", file=sys.stderr)
        return 2

    t0 = time.time()
    root = a.keep or tempfile.mkdtemp(prefix="petrel-live-")
    os.makedirs(root, exist_ok=True)
    try:
        if a.fixtures:
            fix_dir = a.fixtures
            with open(os.path.join(fix_dir, "manifest.json")) as f:
                entries = [e for e in json.load(f) if not a.only or any(s in e["name"] for s in a.only)]
            print(f"run_live: checking {len(entries)} fixtures in {fix_dir}", flush=True)
        else:
            seed = a.seed if a.seed is not None else int(time.time() * 1000) % 1_000_000_007
            print(f"run_live: seed {seed} (replay with --seed {seed})", flush=True)
            fix_dir = os.path.join(root, "fixtures")
            entries = make_fixtures.generate(fix_dir, seed, make_fixtures.select_cases(a.only),
                                             verify=not a.no_verify, verbose=False)
        work = os.path.join(root, "petrel")
        t1 = time.time()
        with ThreadPoolExecutor(max(1, a.jobs)) as pool:
            results = pool.map(lambda e: (e, run_fixture(petrel, os.path.join(fix_dir, e["name"]), e, work)),
                               entries)
            failed = []
            for e, why in results:
                label = f"{e['name']} ({e['steps']} step{'s' if e['steps'] != 1 else ''})"
                if why:
                    failed.append(e["name"])
                    print(f"FAIL  {label}: {why}", flush=True)
                else:
                    print(f"ok    {label}", flush=True)
        n_model = sum(e["kind"] == "model" for e in entries)
        print(f"run_live: {len(entries) - len(failed)}/{len(entries)} fixtures passed "
              f"({len(entries) - n_model} op, {n_model} model); petrel {time.time() - t1:.0f}s, "
              f"total {time.time() - t0:.0f}s")
        if failed:
            print(f"run_live: failed: {' '.join(failed)}")
        if a.keep:
            print(f"run_live: fixtures and outputs kept in {root}")
        return 1 if failed or not entries else 0
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
