#!/usr/bin/env python3
"""Draw loss.csv (written by train.py) as loss.png; needs matplotlib."""
import csv
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = os.path.dirname(os.path.abspath(__file__))
rows = list(csv.DictReader(open(os.path.join(HERE, "loss.csv"))))
tok = [int(r["tokens"]) / 1e6 for r in rows]
tr = [float(r["train_loss"]) for r in rows]
ho = [(t, float(r["heldout_loss"])) for t, r in zip(tok, rows) if not math.isnan(float(r["heldout_loss"]))]
best = min(ho, key=lambda x: x[1])
plt.figure(figsize=(7, 4))
plt.plot(tok, tr, label="train")
plt.plot([x for x, _ in ho], [y for _, y in ho], "o-", label="held out")
plt.axvline(best[0], color="gray", linestyle=":", label=f"kept (held-out {best[1]:.2f})")
plt.xlabel("tokens seen (millions)")
plt.ylabel("cross-entropy (nats/token)")
plt.title("demo model training (one H100, 2.5 min)")
plt.legend()
plt.tight_layout()
plt.savefig(os.path.join(HERE, "loss.png"), dpi=100)
