"""Random rollouts: one compressed file per episode, written atomically, resumable.

Episode i of a collection is fully determined by (seed, i): its env seed and policy seed come from
`numpy.random.SeedSequence([seed, i, attempt])`. A killed collection therefore resumes by writing
exactly the episodes whose files are missing: no duplicates, no gaps, and never a half-written file
(each is written to a temporary name and renamed). The file format is in episodes.py.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .envs import cached_env, check_env_name
from .episodes import clean_partial_files, episode_path, save_episode
from .errors import WMError, check_fields
from .parallel import local_weights, open_executor, run_tasks, ship_weights
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


def play_episode(env, act, seed: int, max_steps: int | None = None, keep_frames: bool = False) -> dict:
    """Play one real episode: act(frame) -> action, from env.reset(seed=seed) until the game ends or
    max_steps actions (None: the env's own cap). Every single real episode wmlib plays is played here.

    Returns "action" (T, A) float32, "reward" (T,) float64, "done" (T,) (the game ended at that step) and,
    with keep_frames, "obs": the T + 1 frames seen, the first one to the last.

    Introduced in chapter 8.
    """
    frame, _ = env.reset(seed=seed)
    frames, actions, rewards, dones = [frame], [], [], []
    while max_steps is None or len(actions) < max_steps:
        a = act(frame)
        actions.append(np.asarray(a, dtype=np.float32))
        frame, r, terminated, truncated, _ = env.step(a)
        if keep_frames:
            frames.append(frame)
        rewards.append(r)
        dones.append(terminated)
        if terminated or truncated:
            break
    ep = {"action": np.stack(actions), "reward": np.asarray(rewards, np.float64), "done": np.asarray(dones, bool)}
    return {"obs": np.stack(frames), **ep} if keep_frames else ep


class CollectTask(NamedTuple):
    """Episode `index` of a collection, for a worker. A NamedTuple, not a dataclass: a Dask worker gets the
    shipped weights it may carry only from inside tuples, lists and dicts."""
    env: str
    directory: str | None  # None: a worker that cannot see this machine's disk sends the episode back
    index: int
    seed: int  # the collection's seed
    policy: str
    max_steps: int
    min_length: int
    weights: object  # None, or for the "agent" policy a path or a DaskExecutor's handle (ship_weights)
    noise: float


def collect_episode(task: CollectTask):
    """Worker: play one episode and write it to `directory`; returns its length. With no directory (a
    worker that cannot see this machine's disk) it returns the episode's arrays instead."""
    env = cached_env(task.env, task.max_steps)
    weights = None if task.weights is None else local_weights(task.weights)
    for attempt in range(1000):
        s = episode_seed(task.seed, task.index, attempt)
        policy = make_policy(task.policy, task.env, s, weights, task.noise)
        played = play_episode(env, policy.act, s, task.max_steps, keep_frames=True)
        if len(played["action"]) > task.min_length:
            break
    else:
        raise RuntimeError(f"no episode longer than {task.min_length} steps in 1000 attempts")
    # The file's obs are the frames the actions answered, not the last one
    ep = {"obs": played["obs"][:-1], "action": played["action"], "reward": played["reward"].astype(np.float32),
          "done": played["done"], "seed": np.int64(s), "policy": np.str_(task.policy)}
    if task.directory is None:
        return ep
    save_episode(episode_path(task.directory, task.index), ep)
    return len(ep["obs"])


def collect(env: str, directory: Path, episodes: int, *, seed: int = 0, policy: str | None = None,
            max_steps: int = 1000, min_length: int = 0, workers: int | None = None, executor=None,
            progress: bool = True, weights: str | None = None, noise: float = 0.0) -> list[Path]:
    """Make sure directory holds episodes 0..episodes-1 (writing only the missing ones). Chapter 3."""
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
    with open_executor(executor, workers, len(todo)) as ex:
        remote = getattr(ex, "remote", False)  # its workers send the episodes back, written here
        if weights is not None:
            weights = ship_weights(ex, weights) if todo else None
        tasks = [CollectTask(env, None if remote else str(directory), i, seed, policy, max_steps, min_length, weights,
                             noise) for i in todo]
        for i, result in run_tasks(collect_episode, tasks, ex, desc=f"collect {env}", progress=progress):
            if remote:
                save_episode(episode_path(directory, todo[i]), result)
    return [episode_path(directory, i) for i in range(episodes)]

