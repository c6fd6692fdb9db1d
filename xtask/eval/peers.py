"""Peers for `cargo xtask eval`: the same MovieLens-100k stream and protocol as
origin/benches/eval.rs, for eALS (He et al. 2016, the `eals` package,
update_model per event) and implicit's ALS retrained on the prefix every N
events. Usage: peers.py DATA_DIR OUT_JSON."""
import json
import sys
import time

import numpy as np
import scipy.sparse as sps

K, WARMUP, HOLDOUT, WINDOW, RETRAIN_EVERY = 10, 0.1, 0.1, 2000, 5000
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


def evaluate(name, rows, n_users, n_items, scores, learn, progress=True):
    n = len(rows)
    warm, hold = int(n * WARMUP), int(n * (1 - HOLDOUT))
    seen = [set() for _ in range(n_users)]
    hits = ndcg = 0.0
    tested, window_hits, series, update_s = 0, 0.0, [], 0.0
    for idx, (u, i, r, t) in enumerate(rows[:hold]):
        if idx >= warm:
            s = scores(u).copy()
            if seen[u]:
                s[list(seen[u])] = -np.inf
            top = np.argpartition(-s, K)[:K]
            top = top[np.argsort(-s[top])]
            tested += 1
            where = np.nonzero(top == i)[0]
            if where.size:
                hits += 1
                window_hits += 1
                ndcg += 1 / np.log2(where[0] + 2)
            if tested % WINDOW == 0:
                series.append(window_hits / WINDOW)
                window_hits = 0.0
        t0 = time.perf_counter()
        learn(idx, u, i, r)
        update_s += time.perf_counter() - t0
        seen[u].add(i)
        if progress and idx % 10000 == 0:
            print(f"  {name:<12} {idx}/{n}", file=sys.stderr, flush=True)
    holdout_hits = 0
    for u, i, r, t in rows[hold:]:
        s = scores(u).copy()
        if seen[u]:
            s[list(seen[u])] = -np.inf
        if i in np.argpartition(-s, K)[:K]:
            holdout_hits += 1
    result = {
        "hr10": hits / tested,
        "ndcg10": ndcg / tested,
        "holdout_hr10": holdout_hits / (n - hold),
        "update_us": update_s * 1e6 / hold,
        "hr10_series": series,
    }
    print(f"  {name:<12} HR@10 {result['hr10']:.4f}  NDCG@10 {result['ndcg10']:.4f}  holdout HR@10 {result['holdout_hr10']:.4f}  update {result['update_us']:.1f} us/event", file=sys.stderr)
    return result


def matrix(rows, n_users, n_items, weights):
    u = np.array([r[0] for r in rows])
    i = np.array([r[1] for r in rows])
    w = np.array([weight(r[2]) if weights else 1.0 for r in rows], dtype=np.float32)
    m = sps.csr_matrix((w, (u, i)), shape=(n_users, n_items), dtype=np.float32)
    m.sum_duplicates()
    return m


def run_eals(rows, n_users, n_items):
    from eals import ElementwiseAlternatingLeastSquares

    warm = int(len(rows) * WARMUP)
    model = ElementwiseAlternatingLeastSquares(factors=64, random_state=0)
    m = matrix(rows[:warm], n_users, n_items, weights=False)
    m.data[:] = 1.0
    model.fit(m)

    def learn(idx, u, i, r):
        if idx >= warm:
            model.update_model(u, i)

    return evaluate("eals", rows, n_users, n_items, lambda u: model.user_factors[u] @ model.item_factors.T, learn)


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

    return evaluate("implicit-als", rows, n_users, n_items, lambda u: model.user_factors[u] @ model.item_factors.T, learn)


def main():
    data_dir, out = sys.argv[1], sys.argv[2]
    rows, n_users, n_items = load(data_dir)
    results = {"eals": run_eals(rows, n_users, n_items), "implicit-als": run_implicit(rows, n_users, n_items)}
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
