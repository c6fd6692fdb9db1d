"""The A/B lift of rail CTR as it was read every simulated minute, with its
always-valid and fixed-horizon 95 % intervals and the true lift:
experiment_plot.py EXPERIMENT_JSON OUT_PNG."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ab = json.load(open(sys.argv[1]))["ab"]
peeks = [p for p in ab["peeks"] if p["lift"] is not None]
minutes = [p["minute"] for p in peeks]
pct = lambda xs: [100 * x for x in xs]
fig, ax = plt.subplots(figsize=(9, 4.5))
ax.fill_between(minutes, pct([p["always_valid"][0] for p in peeks]), pct([p["always_valid"][1] for p in peeks]),
                alpha=0.25, label="always-valid 95 % (safe to read every minute)")
ax.plot(minutes, pct([p["fixed"][0] for p in peeks]), "k:", linewidth=1, label="fixed-horizon 95 %")
ax.plot(minutes, pct([p["fixed"][1] for p in peeks]), "k:", linewidth=1)
ax.plot(minutes, pct([p["lift"] for p in peeks]), linewidth=2, label="measured lift")
ax.axhline(100 * ab["true_lift"], color="C3", linestyle="--", label=f"true lift {100 * ab['true_lift']:+.0f} %")
ax.axhline(0, color="grey", linewidth=0.8)
ax.set_xlabel(f"simulated minute (the results read after each; {ab['units']} readers, each visiting with probability 0.5 a minute)")
ax.set_ylabel("lift of rail CTR, production over popularity (%)")
ax.set_title("A/B through the pipeline: the confidence sequence over time")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
