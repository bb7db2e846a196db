"""Is CMA-ES's ranking of a CarRacing population more than noise? Rank correlation of two rollout sets.

    python benchmarks/carracing_ranking.py [--pop 16] [--rollouts 4] [--weights pretrained/carracing]

CMA-ES ranks each generation's candidates by their mean return over `rollouts` tracks. The agent is
chaotic (the same C on the same track can score 500 or 830), so with few rollouts the ranking may be
mostly luck. This plays one population twice, on two disjoint sets of `--rollouts` training tracks
(set A: generation 0's seeds, set B: generation 1's), and prints the Spearman rank correlation between
the two sets' mean returns using the first r tracks of each, for r = 1, 2, 4, ... up to --rollouts.
A correlation near 1 means the ranking is reproducible; near 0, CMA-ES is told noise.

Population: the C of --weights plus N(0, sigma^2) noise (a generation of a search near a trained C),
1,000-step episodes, 2 worker processes. `--stall-steps N` ends episodes after N steps without a new
tile, as training would (wmlib.rollout.Stall). The last stdout line is one JSON object.

    python benchmarks/carracing_ranking.py --search pretrained/carracing/v2-progress/cmaes [--window 20]

plays nothing: it reads a search's own returns (cmaes/state.npz, every candidate's return on each of the
generation's tracks, which all candidates share) and measures the same thing on the populations the search
really had, window by window: the rank correlation of the candidates' means on the generation's first and
second halves of its tracks (two independent sets of rollouts/2 tracks), and, from a two-way analysis of
variance of each generation (candidate x track), the spread of the candidates' true means against the
per-track noise, which predicts the correlation of two independent sets of r tracks for any r
(reliability var_c / (var_c + var_noise / r); the track's own difficulty, shared by all candidates of a
generation, cancels out of the ranking and is left out).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from wmlib.checkpoint import load_model
from wmlib.cmaes import generation_returns, variance_parts
from wmlib.controller import Controller, ControllerConfig
from wmlib.parallel import make_executor
from wmlib.rollout import real_returns, train_seed


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def search_ranking(state_dir: Path, window: int) -> None:
    """The ranking of a search's own populations, from its saved returns (no episode played)."""
    with np.load(state_dir / "state.npz", allow_pickle=False) as f:
        returns = f["returns"]
    log = [json.loads(x) for x in (state_dir / "log.jsonl").read_text().splitlines()]
    per_gen = [generation_returns(r) for r in returns]
    gens = len(per_gen)
    tracks = min(r.shape[1] for r in per_gen)
    if tracks < 2 or any(r.shape[1] % 2 for r in per_gen):
        raise SystemExit(f"{state_dir} has {tracks} rollouts per candidate: the halves need an even number >= 2")
    half = tracks // 2
    rs = [1, half, tracks, 2 * tracks, 4 * tracks]
    shapes = sorted({r.shape for r in per_gen})
    print(f"{state_dir}: {gens} generations of " + ", ".join(f"{p} candidates x {t} tracks" for p, t in shapes))
    # the std sampled: sigma, or the median coordinate's std where the log records it (a floor can hold it above)
    def sampled(x): return x.get("median_std", x["sigma"])
    print("| generations | sampled std at the end | candidates' std | noise std per track | measured, "
          f"{half} vs {half} tracks | " + " | ".join(f"predicted, r = {r}" for r in rs) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(rs))
    rows = []
    for lo in range(0, gens, window):
        hi = min(gens, lo + window)
        parts = np.array([variance_parts(per_gen[g]) for g in range(lo, hi)]).mean(0)
        # the two halves of each generation's own tracks
        measured = float(np.mean([spearman(r[:, :r.shape[1] // 2].mean(1), r[:, r.shape[1] // 2:].mean(1))
                                  for r in per_gen[lo:hi]]))
        predicted = {r: parts[0] / (parts[0] + parts[1] / r) for r in rs}
        rows.append({"generations": [lo + 1, hi], "sigma": sampled(log[hi - 1]), "candidates_std": parts[0] ** 0.5,
                     "noise_std": parts[1] ** 0.5, "measured_halves": measured, "predicted": predicted})
        print(f"| {lo + 1}-{hi} | {sampled(log[hi - 1]):.3f} | {parts[0] ** 0.5:.0f} | {parts[1] ** 0.5:.0f} | "
              f"{measured:.2f} | " + " | ".join(f"{predicted[r]:.2f}" for r in rs) + " |")
    print(json.dumps({"search": str(state_dir), "window": window, "rows": rows}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--search", type=Path, help="a search's cmaes folder: measure its own populations, play nothing")
    p.add_argument("--window", type=int, default=20, help="generations per row of --search")
    p.add_argument("--pop", type=int, default=16)
    p.add_argument("--rollouts", type=int, default=4, help="tracks per set (each candidate plays 2x this)")
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--weights", default="pretrained/carracing")
    p.add_argument("--stall-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    if a.search is not None:
        return search_ranking(a.search, a.window)

    weights = Path(a.weights)
    c, _ = load_model(Controller, ControllerConfig, weights, "controller", "carracing")
    rng = np.random.default_rng(a.seed)
    sols = c.get_flat() + rng.normal(0, a.sigma, (a.pop, c.num_params))
    sets = {name: [train_seed(a.seed, g, r) for r in range(a.rollouts)] for name, g in (("A", 0), ("B", 1))}
    returns, steps = {}, []
    start = time.perf_counter()
    ex = make_executor(a.workers)
    try:
        for name, seeds in sets.items():
            returns[name] = real_returns("carracing", weights, c.config, sols, seeds, max_steps=1000,
                                         stall_steps=a.stall_steps, executor=ex, progress=False, steps_out=steps)
            print(f"set {name}: mean return {returns[name].mean():.1f}", file=sys.stderr)
    finally:
        if ex is not None:
            ex.shutdown()
    secs = time.perf_counter() - start
    rows = {}
    r = 1
    while r <= a.rollouts:
        rho = spearman(returns["A"][:, :r].mean(1), returns["B"][:, :r].mean(1))
        rows[r] = round(rho, 3)
        print(f"rollouts per candidate {r:3d}: Spearman rank correlation of the two sets {rho:+.3f}")
        r *= 2
    spread = returns["A"].mean(1)
    print(f"candidates' mean returns (set A) range {spread.min():.0f} to {spread.max():.0f}; per-track std within a "
          f"candidate {returns['A'].std(1).mean():.0f}; {sum(steps)} env-steps in {secs:.0f} s")
    print(json.dumps({"pop": a.pop, "rollouts": a.rollouts, "sigma": a.sigma, "weights": str(weights),
                      "stall_steps": a.stall_steps, "seed": a.seed, "spearman_by_rollouts": rows,
                      "returns_A": returns["A"].round(1).tolist(), "returns_B": returns["B"].round(1).tolist(),
                      "env_steps": sum(steps), "seconds": round(secs, 1)}))


if __name__ == "__main__":
    main()
