"""Reference values for origin/src/experiments/stats.rs, computed with scipy
and statsmodels (not with the Rust formulas), pinned in stats.json.

    python -m venv /tmp/stats && /tmp/stats/bin/pip install numpy scipy statsmodels
    /tmp/stats/bin/python origin/testdata/stats_reference.py > origin/testdata/stats.json
"""
import json

import numpy as np
import scipy
import statsmodels
from scipy import stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

ALPHA = 0.05
PLANNED = 10_000.0
rng = np.random.default_rng(20261205)


def confidence_sequence_half_width(s2, n, alpha, planned):
    # Waudby-Smith et al. 2023, eq. 9, with rho tuned for `planned` observations.
    l = -2 * np.log(alpha)
    rho2 = (l + np.log(l + 1)) / planned
    return float(np.sqrt(s2 * 2 * (n * rho2 + 1) / (n * n * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha)))


srm = []
for units, weights in [
    ([5000, 5000], [0.5, 0.5]),
    ([5000, 4800], [0.5, 0.5]),
    ([10210, 9790], [0.5, 0.5]),
    ([1000, 2000, 3100], [1 / 6, 1 / 3, 1 / 2]),
    ([900, 2100], [0.25, 0.75]),
]:
    expected = np.array(weights) / sum(weights) * sum(units)
    chi2, p = stats.chisquare(units, expected)
    srm.append({"units": units, "weights": weights, "chi2": float(chi2), "p_value": float(p)})

means = []
for n_a, n_b, shift in [(60, 75, 0.0), (200, 180, 0.4), (1000, 1100, 0.05)]:
    a = rng.poisson(3.0, n_a).astype(float)
    b = rng.poisson(3.0 + shift, n_b).astype(float)
    cm = CompareMeans(DescrStatsW(b), DescrStatsW(a))
    low, high = cm.zconfint_diff(alpha=ALPHA, usevar="unequal")
    _, p = cm.ztest_ind(usevar="unequal")
    var = b.var(ddof=1) / n_b + a.var(ddof=1) / n_a
    half = confidence_sequence_half_width(var * (n_a + n_b), n_a + n_b, ALPHA, PLANNED)
    diff = b.mean() - a.mean()
    # Relative lift by the delta method, its fixed interval from scipy's normal quantile.
    lift = b.mean() / a.mean() - 1
    lift_var = b.var(ddof=1) / n_b / a.mean() ** 2 + b.mean() ** 2 * a.var(ddof=1) / n_a / a.mean() ** 4
    z = stats.norm.ppf(1 - ALPHA / 2)
    means.append({
        "a": a.tolist(), "b": b.tolist(),
        "difference": float(diff), "fixed": [float(low), float(high)], "p_value": float(p),
        "always_valid": [diff - half, diff + half],
        "lift": float(lift), "lift_fixed": [float(lift - z * np.sqrt(lift_var)), float(lift + z * np.sqrt(lift_var))],
    })

ratios = []
for n in [50, 400]:
    y = rng.poisson(6.0, n).astype(float) + 1
    x = rng.binomial(y.astype(int), 0.12).astype(float)
    cov = np.cov(x, y, ddof=1)
    r = x.mean() / y.mean()
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * y.mean() ** 2)
    ratios.append({"units": np.column_stack([x, y]).tolist(), "ratio": float(r), "variance": float(var)})

print(json.dumps({
    "generated_with": {"numpy": np.__version__, "scipy": scipy.__version__, "statsmodels": statsmodels.__version__},
    "alpha": ALPHA, "planned_units": PLANNED,
    "srm": srm, "means": means, "ratios": ratios,
}, indent=1))
