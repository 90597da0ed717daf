"""The decode step's ring GEMVs and attentions block by block, from
step_timeline's records (tests/gpu/step_timeline.c).

For each launch (a kernel node of the captured graph at one replay): its blocks' starts (t0), the moments their
dependent-launch wait returned (t1) and their ends (t2).  Launches are
cut into steps where a launch starts more than 2 us after the one before
ended (the graph boundary and the kernels not instrumented) and labelled by position in the step; per position,
medians over the steps of:

  early    first block start -> first wait return (how early it launched)
  release  end of the launch before (its last block) -> first wait return
  spread   first -> last wait return (blocks that started late)
  after    first wait return -> last block end (the work after the wait)
  block    median over blocks of t2 - t1
and, where the kernel marks them (dense_k.cuh's ST_MARK), the median time
from the wait to each of its marks.
  credit   end of the launch before -> own end

usage: python tests/gpu/step_timeline.py RECORDS.txt [layers=16]
"""
import collections
import statistics
import sys


def main():
    path = sys.argv[1]
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    grids = collections.defaultdict(list)
    for line in open(path):
        f = [int(x) for x in line.split()]
        f += [0] * (10 - len(f))  # t3..t5: the kernel's own marks (0: none)
        grids[f[0]].append(tuple(f[1:]))
    launches = []
    for g, recs in grids.items():
        # %gridid names the graph's kernel node, the same at every replay:
        # a replay's blocks all start within microseconds, replays ~0.5 ms apart
        recs.sort(key=lambda b: b[3])
        cut = [0] + [i for i in range(1, len(recs)) if recs[i][3] - recs[i - 1][3] > 20000] + [len(recs)]
        for a, b in zip(cut, cut[1:]):
            bl = recs[a:b]
            t1 = [x[4] for x in bl]
            marks = [statistics.median(x[k] - x[4] for x in bl) if all(x[k] for x in bl) else None for k in (6, 7, 8)]
            launches.append(dict(kind=bl[0][0], n=len(bl), t0=min(x[3] for x in bl), t1=min(t1), t1max=max(t1),
                                 t2=max(x[5] for x in bl), blk=statistics.median(x[5] - x[4] for x in bl), marks=marks))
    launches.sort(key=lambda l: l["t0"])
    per = 5 * layers + 1  # q/k/v, attention, o, gate/up, down per layer, then the LM head
    # a step starts at a GEMV whose launch comes after a gap of more than 2 us
    # (the graph boundary and the kernels that are not instrumented)
    starts = [i for i in range(1, len(launches)) if launches[i]["t0"] - launches[i - 1]["t2"] > 2000]
    steps = []
    for a in starts:
        seq = launches[a:a + per]
        if len(seq) == per and all(l["kind"] == (2 if i % 5 == 1 and i < per - 1 else 1) for i, l in enumerate(seq)):
            steps.append(seq)
    if not steps:
        sys.exit("step_timeline: no complete step found")
    names = ["q/k/v", "attention", "o", "gate/up", "down"]
    rows = collections.defaultdict(lambda: collections.defaultdict(list))
    for seq in steps:
        for i, l in enumerate(seq):
            name = "LM head" if i == per - 1 else names[i % 5]
            if i < per - 1 and (i < 5 or i >= 5 * (layers - 1)):
                continue  # layers 1 .. layers-2 only
            r = rows[name]
            r["blocks"].append(l["n"])
            r["early"].append((l["t1"] - l["t0"]) / 1e3)
            r["spread"].append((l["t1max"] - l["t1"]) / 1e3)
            r["after"].append((l["t2"] - l["t1"]) / 1e3)
            r["block"].append(l["blk"] / 1e3)
            for k, m in enumerate(l["marks"]):
                if m is not None:
                    r[f"m{k + 3}"].append(m / 1e3)
            if i > 0:
                p = seq[i - 1]
                r["release"].append((l["t1"] - p["t2"]) / 1e3)
                r["credit"].append((l["t2"] - p["t2"]) / 1e3)
    print(f"step_timeline: {len(steps)} steps of {per} launches; medians in us (layers 1-{layers - 2}; LM head)")
    cols = ["blocks", "early", "release", "spread", "after", "block", "credit"]
    print("launch".ljust(10) + "".join(c.rjust(9) for c in cols))
    for name in names + ["LM head"]:
        r = rows[name]
        print(name.ljust(10) + "".join((f"{statistics.median(r[c]):9.2f}" if r[c] else "        -") for c in cols))
    print("the kernels' own marks, after the wait (median over blocks, then steps; us):")
    print("  GEMV: x's prologue done (m3), its first item's copies in (m4), its first row set stored (m5)")
    print("  attention: prologue done (m3), key loop done (m4), partials sent to block 0 (m5)")
    print("launch".ljust(10) + "".join(c.rjust(9) for c in ("m3", "m4", "m5", "block")))
    for name in names + ["LM head"]:
        r = rows[name]
        print(name.ljust(10) + "".join((f"{statistics.median(r[c]):9.2f}" if r[c] else "        -")
                                       for c in ("m3", "m4", "m5", "block")))


if __name__ == "__main__":
    main()
