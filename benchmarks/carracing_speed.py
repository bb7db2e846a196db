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
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wmlib.fast_carracing import ENV_ID  # noqa: E402  (importing registers the id)

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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000, help="timed steps per env per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

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
    print(json.dumps({
        "steps_per_round": a.steps, "rounds": a.rounds, "seed": a.seed,
        "original_steps_per_s": round(rate[ORIGINAL_ID], 2), "fast_steps_per_s": round(rate[ENV_ID], 2),
        "speedup": round(speedup, 3),
        "round_steps_per_s": {name: [round(a.steps / s, 2) for s in secs] for name, secs in seconds.items()},
        "loadavg_1min_start": load_start, "loadavg_1min_end": load_end, "identical": identical,
    }))


if __name__ == "__main__":
    main()
