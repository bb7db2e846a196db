"""Random rollouts: one compressed file per episode, written atomically, resumable.

Episode i of a collection is fully determined by (seed, i): its env seed and policy seed come from
`numpy.random.SeedSequence([seed, i, attempt])`. A killed collection therefore resumes by writing
exactly the episodes whose files are missing: no duplicates, no gaps, and never a half-written file
(each is written to a temporary name and renamed). The file format is in episodes.py.
"""
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .envs import cached_env, check_env_name
from .episodes import clean_partial_files, episode_path, save_episode
from .errors import WMError, check_fields
from .parallel import local_weights, make_executor, run_tasks, ship_weights
from .policies import POLICIES, make_policy


@dataclass
class CollectConfig:
    episodes: int = 10_000
    max_steps: int = 1000
    policy: str = "random_weights"  # CarRacing: random_weights | brownian; Doom: held_random
    min_length: int = 0  # episodes this short or shorter are replaced (Doom: 100)
    workers: int | None = None  # None: one per CPU core

    def __post_init__(self):
        check_fields(self, positive=("episodes", "max_steps"), non_negative=("min_length", "workers"))


def episode_seed(seed: int, index: int, attempt: int = 0) -> int:
    return int(np.random.SeedSequence([seed, index, attempt]).generate_state(1)[0])


def run_episode(env, policy, seed: int, max_steps: int) -> dict:
    frame, _ = env.reset(seed=seed)
    obs, actions, rewards, dones = [], [], [], []
    for _ in range(max_steps):
        a = policy.act(frame)
        obs.append(frame)
        actions.append(np.asarray(a, dtype=np.float32))
        frame, r, terminated, truncated, _ = env.step(a)
        rewards.append(r)
        dones.append(terminated)
        if terminated or truncated:
            break
    return {"obs": np.stack(obs), "action": np.stack(actions), "reward": np.asarray(rewards, np.float32),
            "done": np.asarray(dones, bool)}


def collect_episode(task: tuple):
    """Worker: play one episode and write it to `directory`; returns its length. With no directory (a
    worker that cannot see this machine's disk) it returns the episode's arrays instead."""
    env_name, directory, index, seed, policy_name, max_steps, min_length, weights, noise = task
    env = cached_env(env_name, max_steps)
    weights = None if weights is None else local_weights(weights)
    for attempt in range(1000):
        s = episode_seed(seed, index, attempt)
        ep = run_episode(env, make_policy(policy_name, env_name, s, weights, noise), s, max_steps)
        if len(ep["obs"]) > min_length:
            break
    else:
        raise RuntimeError(f"no episode longer than {min_length} steps in 1000 attempts")
    ep.update(seed=np.int64(s), policy=np.str_(policy_name))
    if directory is None:
        return ep
    save_episode(episode_path(directory, index), ep)
    return len(ep["obs"])


def collect(env: str, directory: Path, episodes: int, seed: int = 0, policy: str | None = None,
            max_steps: int = 1000, min_length: int = 0, workers: int | None = None, executor=None,
            progress: bool = True, weights: str | None = None, noise: float = 0.0) -> list[Path]:
    """Make sure directory holds episodes 0..episodes-1 (writing only the missing ones)."""
    check_env_name(env)
    policy = policy or ("random_weights" if env == "carracing" else "held_random")
    if policy not in POLICIES[env]:
        raise WMError(f"unknown data policy {policy!r} for {env}: choose one of {', '.join(POLICIES[env])}")
    if episodes < 1:
        raise WMError(f"the number of episodes must be at least 1, got {episodes}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    clean_partial_files(directory)
    todo = [i for i in range(episodes) if not episode_path(directory, i).exists()]
    if policy == "agent" and weights is None:
        raise WMError("the 'agent' data policy needs a weights directory with a trained V, M and C")
    own = executor is None and len(todo) > 1
    ex = make_executor(min(len(todo), workers if workers is not None else (os.cpu_count() or 1))) if own else executor
    remote = getattr(ex, "remote", False)  # its workers send the episodes back, written here
    if weights is not None:
        weights = ship_weights(ex, weights) if todo else None
    tasks = [(env, None if remote else str(directory), i, seed, policy, max_steps, min_length, weights, noise)
             for i in todo]
    try:
        for i, result in run_tasks(collect_episode, tasks, ex, desc=f"collect {env}", progress=progress):
            if remote:
                save_episode(episode_path(directory, todo[i]), result)
    finally:
        if own and ex is not None:
            ex.shutdown(cancel_futures=True)
    return [episode_path(directory, i) for i in range(episodes)]

