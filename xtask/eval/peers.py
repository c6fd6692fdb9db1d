"""Peers for `cargo xtask eval`: the same MovieLens-100k stream and protocol as
origin/benches/eval.rs, for eALS (He et al. 2016, the `eals` package,
update_model per event; w0 and regularization tuned on the validation part of
the stream, before VALIDATION_END, never on the holdout) and implicit's ALS
retrained on the prefix every N events, with each user's factors folded in
from everything they did so far at every prediction (`recalculate_user`), so
new users are not stuck at zero until the next retrain. HR@10 / NDCG@10 with
95 % bootstrap intervals over users (1,000 resamples), as in eval.rs.
Usage: peers.py DATA_DIR OUT_JSON."""
import json
import sys
import time

import numpy as np
import scipy.sparse as sps

K, WARMUP, HOLDOUT, WINDOW, RETRAIN_EVERY = 10, 0.1, 0.1, 2000, 5000
VALIDATION_END, BOOTSTRAP = 0.5, 1000
# attune-core's default weights: click 3, long dwell 2, a 5 s dwell 2*5/30.
CLICK, LONG_DWELL, SHORT_DWELL = 3.0, 2.0, 2.0 * 5 / 30


def weight(stars):
    return CLICK + LONG_DWELL if stars >= 4 else CLICK if stars >= 3 else SHORT_DWELL


def load(data_dir):
    users, items, rows = {}, {}, []
    with open(f"{data_dir}/ml-100k.inter") as f:
        next(f)
        for line in f:
            u, i, r, t = line.rstrip("\n").split("\t")[:4]
            rows.append((users.setdefault(u, len(users)), items.setdefault(i, len(items)), float(r), int(float(t) * 1000)))
    rows.sort(key=lambda x: x[3])  # stable, like the Rust side
    return rows, len(users), len(items)


def intervals(per_user):
    """95 % percentile intervals of HR and NDCG, resampling users."""
    stats = np.array(list(per_user.values()))
    rng = np.random.default_rng(42)
    hr, ndcg = [], []
    for _ in range(BOOTSTRAP):
        s = stats[rng.integers(0, len(stats), len(stats))].sum(axis=0)
        hr.append(s[0] / s[2])
        ndcg.append(s[1] / s[2])
    return [float(np.percentile(hr, 2.5)), float(np.percentile(hr, 97.5))], [float(np.percentile(ndcg, 2.5)), float(np.percentile(ndcg, 97.5))]


def top_k(s, seen):
    s = s.copy()
    if seen:
        s[list(seen)] = -np.inf
    top = np.argpartition(-s, K)[:K]
    return top[np.argsort(-s[top])]


def evaluate(name, rows, n_users, n_items, scores, learn, end=None, progress=True):
    n = len(rows)
    warm, hold = int(n * WARMUP), int(n * (1 - HOLDOUT))
    end = hold if end is None else end
    seen = [set() for _ in range(n_users)]
    per_user, holdout = {}, {}
    tested, window_hits, series, update_s, updates = 0, 0.0, [], 0.0, 0

    def tally(table, u, top, i):
        t = table.setdefault(u, [0.0, 0.0, 0.0])
        t[2] += 1
        where = np.nonzero(top == i)[0]
        if where.size:
            t[0] += 1
            t[1] += 1 / np.log2(where[0] + 2)
        return where.size > 0

    for idx, (u, i, r, t) in enumerate(rows[:end]):
        if idx >= warm:
            hit = tally(per_user, u, top_k(scores(u), seen[u]), i)
            tested += 1
            window_hits += hit
            if tested % WINDOW == 0:
                series.append(window_hits / WINDOW)
                window_hits = 0.0
        t0 = time.perf_counter()
        if learn(idx, u, i, r) is not False:
            update_s += time.perf_counter() - t0
            updates += 1
        seen[u].add(i)
        if progress and idx % 10000 == 0:
            print(f"  {name:<12} {idx}/{n}", file=sys.stderr, flush=True)
    if end == hold:
        for u, i, r, t in rows[hold:]:
            tally(holdout, u, top_k(scores(u), seen[u]), i)
    totals = np.array(list(per_user.values())).sum(axis=0)
    result = {"hr10": totals[0] / totals[2], "ndcg10": totals[1] / totals[2], "update_us": update_s * 1e6 / max(updates, 1), "hr10_series": series}
    if end == hold:
        result["hr10_ci"], result["ndcg10_ci"] = intervals(per_user)
        h = np.array(list(holdout.values())).sum(axis=0)
        result["holdout_hr10"], result["holdout_ndcg10"] = h[0] / h[2], h[1] / h[2]
        print(f"  {name:<12} HR@10 {result['hr10']:.4f} {result['hr10_ci']}  NDCG@10 {result['ndcg10']:.4f}  holdout HR@10 {result['holdout_hr10']:.4f}  update {result['update_us']:.1f} us/event", file=sys.stderr)
    return result


def matrix(rows, n_users, n_items, weights):
    u = np.array([r[0] for r in rows])
    i = np.array([r[1] for r in rows])
    w = np.array([weight(r[2]) if weights else 1.0 for r in rows], dtype=np.float32)
    m = sps.csr_matrix((w, (u, i)), shape=(n_users, n_items), dtype=np.float32)
    m.sum_duplicates()
    return m


def run_eals(rows, n_users, n_items, w0=10.0, regularization=0.01, end=None):
    from eals import ElementwiseAlternatingLeastSquares

    warm = int(len(rows) * WARMUP)
    model = ElementwiseAlternatingLeastSquares(factors=64, w0=w0, regularization=regularization, random_state=0)
    m = matrix(rows[:warm], n_users, n_items, weights=False)
    m.data[:] = 1.0
    model.fit(m)

    def learn(idx, u, i, r):
        if idx < warm:
            return False  # in the batch fit above: no update to time
        model.update_model(u, i)

    result = evaluate("eals", rows, n_users, n_items, lambda u: model.user_factors[u] @ model.item_factors.T, learn, end=end, progress=end is None)
    if end is None:
        # The update alone, with no predictions between (a warm cache), over the
        # prequential part: what Attune's `update_alone_us` measures too.
        model = ElementwiseAlternatingLeastSquares(factors=64, w0=w0, regularization=regularization, random_state=0)
        model.fit(m)
        hold = int(len(rows) * (1 - HOLDOUT))
        t0 = time.perf_counter()
        for u, i, r, t in rows[warm:hold]:
            model.update_model(u, i)
        result["update_alone_us"] = (time.perf_counter() - t0) * 1e6 / (hold - warm)
        print(f"  eals         update alone {result['update_alone_us']:.1f} us/event", file=sys.stderr)
    return result


def tune_eals(rows, n_users, n_items):
    """w0 and regularization by validation NDCG@10 (stream before VALIDATION_END)."""
    end = int(len(rows) * VALIDATION_END)
    best = None
    for w0 in (1.0, 10.0, 100.0, 1000.0):
        for reg in (0.01, 0.1):
            score = run_eals(rows, n_users, n_items, w0, reg, end=end)["ndcg10"]
            print(f"  eals tuning: w0 {w0} regularization {reg} -> validation NDCG@10 {score:.4f}", file=sys.stderr, flush=True)
            if best is None or score > best[0]:
                best = (score, w0, reg)
    return best[1], best[2]


def run_implicit(rows, n_users, n_items):
    import threadpoolctl
    from implicit.cpu.als import AlternatingLeastSquares

    threadpoolctl.threadpool_limits(1, "blas")
    warm = int(len(rows) * WARMUP)
    model = AlternatingLeastSquares(factors=64, iterations=15, regularization=0.01, random_state=0)
    state = {"since": 0}

    def fit(upto):
        model.fit(matrix(rows[:upto], n_users, n_items, weights=True), show_progress=False)

    fit(warm)

    def learn(idx, u, i, r):
        if idx < warm:
            return
        state["since"] += 1
        if state["since"] >= RETRAIN_EVERY:
            fit(idx + 1)
            state["since"] = 0

    history = [dict() for _ in range(n_users)]

    def learn_and_remember(idx, u, i, r):
        history[u][i] = history[u].get(i, 0.0) + weight(r)
        learn(idx, u, i, r)

    def scores(u):
        h = history[u]
        if not h:
            return np.zeros(n_items, dtype=np.float32)
        row = sps.csr_matrix((np.fromiter(h.values(), dtype=np.float32), (np.zeros(len(h), dtype=np.int32), np.fromiter(h.keys(), dtype=np.int32))), shape=(1, n_items))
        return model.recalculate_user(0, row) @ model.item_factors.T

    return evaluate("implicit-als", rows, n_users, n_items, scores, learn_and_remember)


def main():
    data_dir, out = sys.argv[1], sys.argv[2]
    rows, n_users, n_items = load(data_dir)
    w0, reg = tune_eals(rows, n_users, n_items)
    results = {"eals": run_eals(rows, n_users, n_items, w0, reg), "implicit-als": run_implicit(rows, n_users, n_items)}
    results["eals"]["tuned"] = {"w0": w0, "regularization": reg}
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
