"""Steps/s of gymnasium's CarRacing-v3 against wmlib's FastCarRacing-v3, and their ratio.

    python benchmarks/carracing_speed.py [--steps 1000] [--rounds 3] [--seed 0]
    nice -n 19 python benchmarks/carracing_speed.py   # on a machine that is busy with other work

What it measures: `env.step` wall time in state_pixels mode, where every step renders the 96x96
observation, as gymnasium.make(...) builds the env (TimeLimit and checker wrappers included).
In each round both envs are reset with the same seed (reset is not timed) and then stepped
`--steps` times with the same pre-drawn random actions. The rounds interleave the two envs, and
the order alternates from round to round, so that load from other processes falls on both alike.
If an episode ends early, the env is reset untimed and continues with the next actions.

steps/s = all timed steps / their total time, per env. speedup = fast / original. The 1-minute
load average is printed at the start and the end, and a loaded machine slows both envs. Each
round also checks that both envs ended on the same observation and total reward. The last stdout
line is one JSON object with every number.

Then the full agent's evaluation throughput (env-steps/s of FastCarRacing with V+M+C inference at
every step, as `evaluate` and CMA-ES run it): `--agent-episodes` episodes of `--agent-steps` steps,
with 1 and 2 worker processes, each worker playing `--envs-per-worker` episodes side by side with
V, M and C batched across them (and, for comparison, 1 env per worker). The weights are randomly
initialised (the throughput does not depend on what they learned) unless --weights is given.

Last, the early end of CMA-ES training episodes (`CMAESConfig.stall_steps`, wmlib.rollout.Stall): one
generation of `--stall-pop` candidates x 1 track of 1,000 steps, played with 2 workers, once in full and
once for each N of `--stall-steps` (ending each episode after N steps without a new tile), for two
populations: the first generation of a search from scratch (N(0, 0.1^2) weights) and candidates around a
trained C (the C of `--stall-weights`, default pretrained/carracing, plus N(0, 0.1^2)). Printed per population: env-steps
played, wall seconds, env-steps/s, training episodes per CPU-hour (episodes / (seconds x workers / 3600))
with and without the early end, and how far the cut fitness moved the ranking (Spearman correlation of
the two fitness vectors; the cut episodes are scored as if they had gone on without a new tile).
"""
import argparse
import json
import os
import sys
import time

import gymnasium
import numpy as np

from wmlib.fast_carracing import ENV_ID  # importing registers the id

ORIGINAL_ID = "CarRacing-v3"


def random_actions(seed: int, n: int) -> list[np.ndarray]:
    """Steer and gas uniform, brake only one step in ten, so that the car drives about."""
    rng = np.random.default_rng(seed)
    actions = []
    for _ in range(n):
        brake = rng.uniform(0, 1) if rng.random() < 0.1 else 0.0
        actions.append(np.array([rng.uniform(-1, 1), rng.uniform(0, 1), brake], dtype=np.float32))
    return actions


def timed_episode(env, seed: int, actions) -> tuple[float, np.ndarray, float]:
    """Seconds spent in env.step over `actions` after reset(seed); also the last obs and total reward."""
    obs, _ = env.reset(seed=seed)
    total_reward, seconds = 0.0, 0.0
    for action in actions:
        start = time.perf_counter()
        obs, reward, terminated, truncated, _ = env.step(action)
        seconds += time.perf_counter() - start
        total_reward += reward
        if terminated or truncated:
            env.reset()
    return seconds, obs, total_reward


def agent_throughput(a) -> dict:
    """env-steps/s of batched V+M+C rollouts with 1 and 2 workers (and 1 vs K envs per worker)."""
    import tempfile

    import torch

    from wmlib.checkpoint import save_model
    from wmlib.controller import Controller, ControllerConfig
    from wmlib.mdnrnn import MDNRNN, MDNRNNConfig
    from wmlib.parallel import make_executor
    from wmlib.rollout import RolloutTask, eval_seed, run_rollouts
    from wmlib.vae import ConvVAE, VAEConfig

    tmp = tempfile.TemporaryDirectory()
    weights = a.weights
    if weights is None:
        weights = tmp.name
        torch.manual_seed(a.seed)
        save_model(ConvVAE(VAEConfig(z_size=32)), weights, "vae", "carracing")
        save_model(MDNRNN(MDNRNNConfig(z_size=32, action_size=3, hidden_size=256)), weights, "mdnrnn", "carracing")
        save_model(Controller(ControllerConfig(kind="zh")), weights, "controller", "carracing")
    tasks = [RolloutTask("carracing", str(weights), eval_seed(a.seed, i), max_steps=a.agent_steps)
             for i in range(a.agent_episodes)]
    out = {}
    for workers in (1, 2):
        for k in sorted({1, a.envs_per_worker}):
            ex = make_executor(workers)
            try:
                run_rollouts(tasks[:workers * k], executor=ex, progress=False, envs_per_worker=k)  # warm-up
                start = time.perf_counter()
                res = run_rollouts(tasks, executor=ex, progress=False, envs_per_worker=k)
                secs = time.perf_counter() - start
            finally:
                if ex is not None:
                    ex.shutdown()
            rate = res[:, 1].sum() / secs
            out[f"workers{workers}_envs{k}"] = round(rate, 1)
            print(f"agent (V+M+C) {workers} worker(s) x {k} env(s) each: {rate:7.1f} env-steps/s", file=sys.stderr)
    w1 = out[f"workers1_envs{a.envs_per_worker}"]
    out["two_vs_one_worker"] = round(out[f"workers2_envs{a.envs_per_worker}"] / w1, 3)
    out["batched_vs_single_env"] = round(w1 / out["workers1_envs1"], 3)
    print(f"agent throughput: 2 vs 1 worker {out['two_vs_one_worker']:.2f}x; {a.envs_per_worker} envs vs 1 env "
          f"per worker {out['batched_vs_single_env']:.2f}x")
    tmp.cleanup()
    return out


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def early_end(a) -> dict:
    """Env-steps and episodes per CPU-hour of one CMA-ES generation with and without the early end."""
    from pathlib import Path

    from wmlib.checkpoint import load_model
    from wmlib.controller import Controller, ControllerConfig
    from wmlib.parallel import make_executor
    from wmlib.rollout import real_returns, train_seed

    weights = Path(a.stall_weights)
    trained, _ = load_model(Controller, ControllerConfig, weights, "controller", "carracing")
    rng = np.random.default_rng(a.seed)
    n = trained.num_params
    populations = {"from scratch (generation 1)": rng.normal(0, 0.1, (a.stall_pop, n)),
                   "around the trained C": trained.get_flat() + rng.normal(0, 0.1, (a.stall_pop, n))}
    seeds = [train_seed(a.seed, 0, 0)]
    workers = 2
    out = {}
    ex = make_executor(workers)
    try:
        real_returns("carracing", weights, trained.config, populations["around the trained C"][:workers], seeds,
                     executor=ex, progress=False)  # warm-up: workers load V and M
        for name, sols in populations.items():
            row = {}
            for label, stall in [("full", None)] + [(f"cut{n}", n) for n in a.stall_steps]:
                steps = []
                start = time.perf_counter()
                fit = real_returns("carracing", weights, trained.config, sols, seeds, max_steps=1000,
                                   stall_steps=stall, executor=ex, progress=False, steps_out=steps)[:, 0]
                secs = time.perf_counter() - start
                row[label] = {"env_steps": steps[0], "seconds": round(secs, 1),
                              "env_steps_per_s": round(steps[0] / secs, 1),
                              "episodes_per_cpu_hour": round(len(sols) / (secs * workers / 3600), 1),
                              "mean_fitness": round(float(fit.mean()), 1), "fitness": fit.round(1).tolist()}
            full = row["full"]
            for n in a.stall_steps:
                cut = row[f"cut{n}"]
                cut["env_steps_saved_per_generation"] = full["env_steps"] - cut["env_steps"]
                cut["episodes_per_cpu_hour_ratio"] = round(cut["episodes_per_cpu_hour"]
                                                           / full["episodes_per_cpu_hour"], 2)
                cut["spearman_vs_full"] = round(spearman(cut["fitness"], full["fitness"]), 3)
                print(f"early end after {n} steps, {name}: {len(sols)} episodes, {full['env_steps']} -> "
                      f"{cut['env_steps']} env-steps ({cut['env_steps_saved_per_generation']} saved per generation); "
                      f"{full['episodes_per_cpu_hour']:.0f} -> {cut['episodes_per_cpu_hour']:.0f} training episodes "
                      f"per CPU-hour ({cut['episodes_per_cpu_hour_ratio']:.2f}x); env-steps/s "
                      f"{full['env_steps_per_s']:.0f} -> {cut['env_steps_per_s']:.0f}; mean fitness "
                      f"{full['mean_fitness']:.0f} -> {cut['mean_fitness']:.0f}; ranking Spearman "
                      f"{cut['spearman_vs_full']:.3f}")
            out[name] = row
    finally:
        if ex is not None:
            ex.shutdown()
    return {"stall_steps": a.stall_steps, "popsize": a.stall_pop, "workers": workers, "populations": out}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000, help="timed steps per env per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--agent-episodes", type=int, default=16, help="0 skips the agent throughput part")
    p.add_argument("--agent-steps", type=int, default=300)
    p.add_argument("--envs-per-worker", type=int, default=8)
    p.add_argument("--weights", default=None, help="a CarRacing run or weights dir (default: random init)")
    p.add_argument("--stall-pop", type=int, default=16, help="candidates per population in the early-end part "
                                                              "(0 skips it)")
    p.add_argument("--stall-steps", type=lambda t: [int(n) for n in t.split(",")], default=[20, 50, 100],
                   help="comma-separated Ns to try (default 20,50,100)")
    p.add_argument("--stall-weights", default="pretrained/carracing")
    p.add_argument("--only-early-end", action="store_true", help="skip the env and agent throughput parts")
    a = p.parse_args()
    if a.only_early_end:
        print(json.dumps({"early_end": early_end(a)}))
        return

    envs = {name: gymnasium.make(name, render_mode="state_pixels") for name in (ORIGINAL_ID, ENV_ID)}
    actions = random_actions(a.seed, a.steps)
    load_start = os.getloadavg()[0]
    seconds = {name: [] for name in envs}
    identical = True
    for r in range(a.rounds):
        order = list(envs) if r % 2 == 0 else list(envs)[::-1]
        results = {}
        for name in order:
            secs, obs, total = timed_episode(envs[name], a.seed, actions)
            seconds[name].append(secs)
            results[name] = (obs, total)
            print(f"round {r + 1}/{a.rounds} {name:24s} {a.steps / secs:7.1f} steps/s", file=sys.stderr)
        (obs_o, rew_o), (obs_f, rew_f) = results[ORIGINAL_ID], results[ENV_ID]
        identical &= bool(np.array_equal(obs_o, obs_f)) and rew_o == rew_f
    load_end = os.getloadavg()[0]
    for env in envs.values():
        env.close()

    rate = {name: a.steps * a.rounds / sum(s) for name, s in seconds.items()}
    speedup = rate[ENV_ID] / rate[ORIGINAL_ID]
    print(f"{ORIGINAL_ID:24s} {rate[ORIGINAL_ID]:7.1f} steps/s")
    print(f"{ENV_ID:24s} {rate[ENV_ID]:7.1f} steps/s")
    print(f"speedup {speedup:.2f}x   (1-min load average {load_start:.2f} at start, {load_end:.2f} at end;"
          f" same final obs and reward: {identical})")
    agent = agent_throughput(a) if a.agent_episodes else {}
    stall = early_end(a) if a.stall_pop else {}
    print(json.dumps({
        "agent_throughput": agent, "early_end": stall,
        "steps_per_round": a.steps, "rounds": a.rounds, "seed": a.seed,
        "original_steps_per_s": round(rate[ORIGINAL_ID], 2), "fast_steps_per_s": round(rate[ENV_ID], 2),
        "speedup": round(speedup, 3),
        "round_steps_per_s": {name: [round(a.steps / s, 2) for s in secs] for name, secs in seconds.items()},
        "loadavg_1min_start": load_start, "loadavg_1min_end": load_end, "identical": identical,
    }))


if __name__ == "__main__":
    main()
