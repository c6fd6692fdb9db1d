"""HR@10 over the stream for Attune and its peers: plot.py EVAL_JSON OUT_PNG.
Ablations are in the JSON and the table, not the plot."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

results = json.load(open(sys.argv[1]))["systems"]
fig, ax = plt.subplots(figsize=(9, 4.5))
for name, r in results.items():
    if name.startswith("attune ") or name.startswith("model only"):
        continue
    xs = [(k + 1) * 2000 for k in range(len(r["hr10_series"]))]
    lo, hi = r.get("hr10_ci", [float("nan")] * 2)
    ax.plot(xs, r["hr10_series"], label=f"{name} (HR@10 {r['hr10']:.3f}, 95 % CI {lo:.3f}–{hi:.3f})", linewidth=2.2 if name == "attune" else 1.2)
ax.set_xlabel("events tested (prequential, MovieLens-100k in time order)")
ax.set_ylabel("HR@10 per 2,000 events")
ax.set_title("Test-then-learn HR@10 over the stream")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
