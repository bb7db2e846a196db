"""Playing the real game with a world-model agent, one episode or many in parallel.

Episode seeds come from `numpy.random.SeedSequence`: evaluation episode i uses ([seed, i, 0]) and
CMA-ES rollouts use ([seed, generation, r, 1]), so the tracks an agent is evaluated on are not the
ones it was trained on. Workers keep their agent and env between tasks (loaded once per process and
weights file), and receive only the controller's parameters with each task.
"""
import numbers
import os
from pathlib import Path

import numpy as np

from .agent import Agent, cached_agent, load_agent
from .envs import cached_env
from .errors import WMError
from .parallel import executor_workers, make_executor, run_tasks, ship_weights


def eval_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode, 0]).generate_state(1)[0])


def train_seed(seed: int, generation: int, rollout: int) -> int:
    return int(np.random.SeedSequence([seed, generation, rollout, 1]).generate_state(1)[0])


def rollout_many(envs: list, agent: Agent, seeds, params=None, max_steps: int | None = None):
    """Play len(envs) episodes side by side, V, M and C batched across them at every step.

    seeds: one per env (the track / game seed and the episode's z-noise). params: None (agent's own
    controller) or (len(envs), P), one controller per episode. Finished episodes leave the batch.
    Returns (total rewards, steps), two arrays of len(envs).
    """
    n = len(envs)
    frames = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)])
    agent.reset(n, seeds, params)
    totals, steps = np.zeros(n), np.zeros(n, dtype=np.int64)
    alive = np.arange(n)
    while len(alive):
        actions = agent.act(frames)
        done = np.zeros(len(alive), dtype=bool)
        for j, i in enumerate(alive):
            frame, reward, terminated, truncated, _ = envs[i].step(actions[j])
            frames[j] = frame
            totals[i] += reward
            steps[i] += 1
            done[j] = terminated or truncated or (max_steps is not None and steps[i] >= max_steps)
        if done.any():
            agent.keep(~done)
            alive, frames = alive[~done], frames[~done]
    return totals, steps


def rollout(env, agent: Agent, seed: int, max_steps: int | None = None) -> tuple[float, int]:
    """One episode; returns (total reward, steps)."""
    totals, steps = rollout_many([env], agent, [seed], None, max_steps)
    return float(totals[0]), int(steps[0])


def rollout_task(task: tuple) -> list[tuple[float, int]]:
    """Worker: (env, weights dir, controller config or None, params (K, P) or None, seeds (K,), max_steps).

    Plays the K episodes side by side on K environments this process keeps between tasks.
    """
    env_name, weights, controller_config, params, seeds, max_steps = task
    agent = cached_agent(env_name, weights, controller_config)
    envs = [cached_env(env_name, max_steps, k) for k in range(len(seeds))]  # None: the env's own cap
    totals, steps = rollout_many(envs, agent, seeds, params, None)
    return [(float(t), int(s)) for t, s in zip(totals, steps)]


def group_size(n_tasks: int, workers: int, envs_per_worker: int) -> int:
    """Episodes per batched task: at most envs_per_worker, and enough tasks to keep every worker busy."""
    return max(1, min(envs_per_worker, -(-n_tasks // max(1, workers))))


def run_rollouts(tasks: list, workers: int | None = None, executor=None, desc: str = "rollouts",
                 progress: bool = True, envs_per_worker: int = 8) -> np.ndarray:
    """Run single-episode tasks (env, weights, controller config, params or None, seed, max_steps).

    Consecutive tasks with the same env, weights, controller and cap are grouped into batched tasks
    of up to `envs_per_worker` episodes, each played side by side in one worker. Returns an array
    (len(tasks), 2) of (return, steps).
    """
    out = np.zeros((len(tasks), 2))
    own = executor is None
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    ex = make_executor(min(len(tasks), n_workers)) if own else executor
    k = group_size(len(tasks), executor_workers(ex, n_workers), envs_per_worker)
    groups = []
    for start in range(len(tasks)):
        t = tasks[start]
        key = (t[0], t[1], repr(t[2]), t[3] is None, t[5])
        if groups and groups[-1][0] == key and len(groups[-1][1]) < k:
            groups[-1][1].append(start)
        else:
            groups.append((key, [start]))
    batched = []
    for _, idx in groups:
        env_name, weights, ccfg, _, _, max_steps = tasks[idx[0]]
        # ship_weights reads unchanged files once, and a DaskExecutor sends a bundle once: V and M travel
        # once per CMA-ES run, not per task. CMA-ES candidates need no C file.
        weights = ship_weights(ex, weights, ("vae", "mdnrnn") if ccfg else ("vae", "mdnrnn", "controller"))
        params = None if tasks[idx[0]][3] is None else np.stack([np.asarray(tasks[i][3]) for i in idx])
        batched.append((env_name, weights, ccfg, params, [tasks[i][4] for i in idx], max_steps))
    try:
        for g, results in run_tasks(rollout_task, batched, ex, desc=desc, progress=progress):
            for i, res in zip(groups[g][1], results):
                out[i] = res
    finally:
        if own and ex is not None:
            ex.shutdown(cancel_futures=True)
    return out


def evaluate(env: str, weights: Path, episodes: int, seed: int = 0, max_steps: int | None = None,
             workers: int | None = None, executor=None, progress: bool = True) -> dict:
    """Evaluate the agent stored in `weights` on `episodes` real episodes."""
    if not isinstance(episodes, numbers.Integral) or episodes < 1:
        raise WMError(f"evaluate needs at least 1 episode, got {episodes!r}; the paper scores over 100")
    load_agent(Path(weights), env)  # fail here, with a clear error, rather than in a worker
    tasks = [(env, str(weights), None, None, eval_seed(seed, i), max_steps) for i in range(episodes)]
    res = run_rollouts(tasks, workers, executor, desc=f"evaluate {env}", progress=progress)
    returns = res[:, 0]
    return {"env": env, "weights": str(weights), "episodes": episodes, "seed": seed,
            "mean": float(returns.mean()), "std": float(returns.std()), "returns": returns.tolist(),
            "steps": res[:, 1].astype(int).tolist()}
