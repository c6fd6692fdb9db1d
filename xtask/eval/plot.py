"""HR@10 over the stream for every system: plot.py EVAL_JSON OUT_PNG."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

results = json.load(open(sys.argv[1]))["systems"]
fig, ax = plt.subplots(figsize=(9, 4.5))
for name, r in results.items():
    xs = [(k + 1) * 2000 for k in range(len(r["hr10_series"]))]
    ax.plot(xs, r["hr10_series"], label=f"{name} (HR@10 {r['hr10']:.3f})", linewidth=2 if name == "attune" else 1.2)
ax.set_xlabel("events tested (prequential, MovieLens-100k in time order)")
ax.set_ylabel("HR@10 per 2,000 events")
ax.set_title("Test-then-learn HR@10 over the stream")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
