"""Evaluation throughput on local worker processes and on a Dask cluster, side by side.

    python benchmarks/executor_throughput.py [--env doom] [--weights pretrained/doom] [--episodes 16]
                                             [--max-steps 300] [--rounds 2]

What it measures: `wmlib.rollout.evaluate` (real episodes with V, M and C at every step, as `evaluate`
and the real-game CMA-ES run it) on --episodes episodes capped at --max-steps steps, through four
executors: local processes (wmlib's WorkerPool) with 1 and 2 workers, and a Dask distributed cluster on
loopback (a real scheduler and worker processes, one thread each: `distributed.LocalCluster`) with 1
and 2 workers. Each executor is started once and warmed up with one untimed evaluation (worker start-up,
imports, the game processes, and for Dask the weights sent once), then timed over --rounds evaluations,
interleaved across executors so that load from other processes falls on all of them alike.

env-steps/s = all steps played / their total time. The ratios compare each Dask setup with local
processes of the same count, measured in this one run. Every executor must return the same returns
(same seeds), which is checked. The 1-minute load average is printed at the start and the end. The last
stdout line is one JSON object with every number.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from wmlib.envs import close_games
from wmlib.parallel import DaskExecutor, WorkerPool
from wmlib.rollout import evaluate

ROOT = Path(__file__).resolve().parents[1]  # where pretrained/ is


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="doom", choices=("doom", "carracing"))
    ap.add_argument("--weights", default=None, help="default: pretrained/ENV")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    weights = Path(args.weights or ROOT / "pretrained" / args.env)
    if not (weights / "controller.safetensors").exists():
        sys.exit(f"no trained agent in {weights}: pass --weights RUN_OR_WEIGHTS_DIR")
    from distributed import LocalCluster

    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", flush=True)
    clusters = {n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                silence_logs=40) for n in (1, 2)}
    executors = {"local 1": WorkerPool(1), "local 2": WorkerPool(2),
                 "dask 1": DaskExecutor(clusters[1].scheduler_address),
                 "dask 2": DaskExecutor(clusters[2].scheduler_address)}
    play = lambda ex, seed: evaluate(args.env, weights, args.episodes, seed=seed, max_steps=args.max_steps,
                                     executor=ex, progress=False)
    steps = {k: 0 for k in executors}
    seconds = {k: 0.0 for k in executors}
    try:
        reference = None
        for name, ex in executors.items():  # warm-up, untimed; also: every executor, the same returns
            res = play(ex, args.seed)
            if reference is None:
                reference = res["returns"]
            assert np.array_equal(res["returns"], reference), f"{name} returned other returns than local 1"
        names = list(executors)
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                res = play(executors[name], args.seed + 1 + r)
                seconds[name] += time.perf_counter() - t0
                steps[name] += int(np.sum(res["steps"]))
    finally:
        for name, ex in executors.items():
            if name.startswith("dask"):  # end the workers' Doom games (they would outlive a closed cluster)
                ex.client.run(close_games)
            ex.shutdown()
        for c in clusters.values():
            c.close()
    rate = {k: steps[k] / seconds[k] for k in executors}
    for k in executors:
        print(f"{k:8s}  {rate[k]:8.0f} env-steps/s  ({steps[k]} steps in {seconds[k]:.1f} s)")
    ratios = {f"dask {n} / local {n}": rate[f"dask {n}"] / rate[f"local {n}"] for n in (1, 2)}
    ratios["local 2 / local 1"] = rate["local 2"] / rate["local 1"]
    ratios["dask 2 / dask 1"] = rate["dask 2"] / rate["dask 1"]
    for k, v in ratios.items():
        print(f"{k:18s} {v:.2f}x")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(json.dumps({"env": args.env, "weights": str(weights), "episodes": args.episodes,
                      "max_steps": args.max_steps, "rounds": args.rounds, "env_steps_per_s": rate,
                      "ratios": ratios, "load_average_end": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
