"""Playing the real game with a world-model agent, one episode or many in parallel.

Episode seeds come from `numpy.random.SeedSequence`: evaluation episode i uses ([seed, i, 0]) and
CMA-ES rollouts use ([seed, generation, r, 1]), so the tracks an agent is evaluated on are not the
ones it was trained on. Workers keep their agent and env between tasks (loaded once per process and
weights file), and receive only the controller's parameters with each task.
"""
import os
from pathlib import Path

import numpy as np

from .agent import Agent, load_agent
from .collect import _cached_env
from .controller import Controller, ControllerConfig
from .parallel import make_executor, run_tasks


def eval_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode, 0]).generate_state(1)[0])


def train_seed(seed: int, generation: int, rollout: int) -> int:
    return int(np.random.SeedSequence([seed, generation, rollout, 1]).generate_state(1)[0])


def rollout(env, agent: Agent, seed: int, max_steps: int | None = None) -> tuple[float, int]:
    """One episode; returns (total reward, steps)."""
    frame, _ = env.reset(seed=seed)
    agent.reset(1, seed)
    total, steps = 0.0, 0
    while max_steps is None or steps < max_steps:
        action = agent.act(frame[None])[0]
        frame, reward, terminated, truncated, _ = env.step(action)
        total += reward
        steps += 1
        if terminated or truncated:
            break
    return total, steps


_AGENTS: dict = {}


def _worker_agent(env_name: str, weights: str, controller_config: dict | None) -> Agent:
    files = [Path(weights) / f for f in ("vae.safetensors", "mdnrnn.safetensors", "controller.safetensors")]
    key = (env_name, str(weights), repr(controller_config),
           tuple(os.path.getmtime(f) if f.exists() else 0 for f in files))
    if key not in _AGENTS:
        _AGENTS.clear()
        controller = Controller(ControllerConfig(**controller_config)) if controller_config else None
        _AGENTS[key] = load_agent(Path(weights), env_name, controller)
    return _AGENTS[key]


def rollout_task(task: tuple) -> tuple[float, int]:
    """Worker: (env, weights dir, controller config or None, params or None, seed, max_steps)."""
    env_name, weights, controller_config, params, seed, max_steps = task
    agent = _worker_agent(env_name, weights, controller_config)
    if params is not None:
        agent.controller.set_flat(params)
    env = _cached_env(env_name, max_steps)  # None: the env's own cap (CarRacing 1,000, Doom 2,100)
    return rollout(env, agent, seed, None)


def run_rollouts(tasks: list, workers: int | None = None, executor=None, desc: str = "rollouts",
                 progress: bool = True) -> np.ndarray:
    """Run rollout tasks in parallel; returns an array (len(tasks), 2) of (return, steps)."""
    out = np.zeros((len(tasks), 2))
    own = executor is None
    ex = make_executor(min(len(tasks), workers if workers is not None else (os.cpu_count() or 1))) if own else executor
    try:
        for i, (ret, steps) in run_tasks(rollout_task, tasks, ex, desc=desc, progress=progress):
            out[i] = ret, steps
    finally:
        if own and ex is not None:
            ex.shutdown(cancel_futures=True)
    return out


def evaluate(env: str, weights: Path, episodes: int, seed: int = 0, max_steps: int | None = None,
             workers: int | None = None, executor=None, progress: bool = True) -> dict:
    """Evaluate the agent stored in `weights` on `episodes` real episodes."""
    load_agent(Path(weights), env)  # fail here, with a clear error, rather than in a worker
    tasks = [(env, str(weights), None, None, eval_seed(seed, i), max_steps) for i in range(episodes)]
    res = run_rollouts(tasks, workers, executor, desc=f"evaluate {env}", progress=progress)
    returns = res[:, 0]
    return {"env": env, "weights": str(weights), "episodes": episodes, "seed": seed,
            "mean": float(returns.mean()), "std": float(returns.std()), "returns": returns.tolist(),
            "steps": res[:, 1].astype(int).tolist()}
