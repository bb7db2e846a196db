"""Playing the real game with a world-model agent, one episode or many in parallel.

Episode seeds come from `numpy.random.SeedSequence`: evaluation episode i uses ([seed, i, 0]) and
CMA-ES rollouts use ([seed, generation, r, 1]), so the tracks an agent is evaluated on are not the
ones it was trained on. Workers keep their agent and env between tasks (loaded once per process and
weights file), and receive only the controller's parameters with each task.
"""
import dataclasses
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .agent import Agent, cached_agent, load_agent
from .controller import ControllerConfig
from .envs import MAX_STEPS, cached_env
from .errors import WMError
from .parallel import executor_workers, open_executor, resolve_workers, run_tasks, ship_weights


def eval_seed(seed: int, episode: int) -> int:
    """The game seed of evaluation episode `episode` (a stream disjoint from training's). Chapter 6."""
    return int(np.random.SeedSequence([seed, episode, 0]).generate_state(1)[0])


def train_seed(seed: int, generation: int, rollout: int) -> int:
    """The game seed of rollout `rollout` of CMA-ES generation `generation`. Chapter 6."""
    return int(np.random.SeedSequence([seed, generation, rollout, 1]).generate_state(1)[0])


@dataclass(frozen=True)
class Stall:
    """End a *training* episode once it has gone `steps` steps without a positive reward.

    In CarRacing a positive reward means a new tile of the road; a car that has left the road, spun or
    stopped earns only the -0.1 time penalty from then on, and CMA-ES would spend up to a thousand steps
    learning nothing from it (the AttentionAgent recipe ended such episodes after 20 steps). The cut
    episode is scored as if it had gone on that way to the end: the remaining `episode_steps - t` steps
    are counted at the reward of its last step. A car that would have found the road again is
    underrated; that is the price. Evaluation episodes are never cut.
    """
    steps: int
    episode_steps: int  # the episode's cap, to which a cut episode's penalty is counted


def rollout_many(envs: list, agent: Agent, seeds, *, params=None, max_steps: int | None = None,
                 stall: Stall | None = None):
    """Play len(envs) episodes side by side, V, M and C batched across them at every step.

    seeds: one per env (the track / game seed and the episode's z-noise). params: None (agent's own
    controller) or (len(envs), P), one controller per episode. Finished episodes leave the batch.
    stall (training episodes only, never an evaluation): end an episode early once it has gone
    stall.steps steps without a positive reward (see Stall). Returns (total rewards, steps), two arrays
    of len(envs); steps counts the steps played.

    Introduced in chapter 8.
    """
    n = len(envs)
    frames = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)])
    agent.reset(n, seeds, params)
    totals, steps = np.zeros(n), np.zeros(n, dtype=np.int64)
    since_gain = np.zeros(n, dtype=np.int64)  # steps since the last positive reward
    alive = np.arange(n)
    while len(alive):
        actions = agent.act(frames)
        done = np.zeros(len(alive), dtype=bool)
        for j, i in enumerate(alive):
            frame, reward, terminated, truncated, _ = envs[i].step(actions[j])
            frames[j] = frame
            totals[i] += reward
            steps[i] += 1
            since_gain[i] = 0 if reward > 0 else since_gain[i] + 1
            done[j] = terminated or truncated or (max_steps is not None and steps[i] >= max_steps)
            if stall is not None and not done[j] and since_gain[i] >= stall.steps:
                done[j] = True
                totals[i] += reward * (stall.episode_steps - steps[i])
        if done.any():
            agent.keep(~done)
            alive, frames = alive[~done], frames[~done]
    return totals, steps


def rollout(env, agent: Agent, seed: int, *, max_steps: int | None = None) -> tuple[float, int]:
    """One episode; returns (total reward, steps)."""
    totals, steps = rollout_many([env], agent, [seed], max_steps=max_steps)
    return float(totals[0]), int(steps[0])


@dataclass(frozen=True)
class RolloutTask:
    """One real episode for run_rollouts: the agent of `weights` plays `env` on game seed `seed`. Chapter 7."""
    env: str
    weights: str  # a run or weights directory
    seed: int
    controller: dict | None = None  # a ControllerConfig as a dict for a C the task brings; None: the weights' own C
    params: np.ndarray | None = None  # (P,) that C's flat parameters (a CMA-ES candidate)
    max_steps: int | None = None  # None: the env's own cap
    stall_steps: int | None = None  # end the episode after this many steps without a positive reward (training)

    def batch_key(self) -> tuple:
        """Tasks with equal keys can be played side by side: same game, V and M, kind of C, cap and stall."""
        return self.env, self.weights, repr(self.controller), self.params is None, self.max_steps, self.stall_steps


class RolloutBatch(NamedTuple):
    """What a worker plays: len(seeds) RolloutTasks with equal batch keys. A NamedTuple, not a dataclass:
    a Dask worker gets the shipped weights it carries only from inside tuples, lists and dicts."""
    env: str
    weights: object  # a path, or a DaskExecutor's handle to the files (ship_weights)
    seeds: list
    controller: dict | None
    params: np.ndarray | None  # (len(seeds), P) or None
    max_steps: int | None
    stall_steps: int | None = None


def rollout_task(batch: RolloutBatch) -> list[tuple[float, int]]:
    """Worker: play a batch's episodes side by side on environments this process keeps between tasks."""
    agent = cached_agent(batch.env, batch.weights, batch.controller)
    envs = [cached_env(batch.env, batch.max_steps, k) for k in range(len(batch.seeds))]  # None: the env's own cap
    stall = None if batch.stall_steps is None else Stall(batch.stall_steps, batch.max_steps or MAX_STEPS[batch.env])
    totals, steps = rollout_many(envs, agent, batch.seeds, params=batch.params, stall=stall)
    return [(float(t), int(s)) for t, s in zip(totals, steps)]


def group_size(n_tasks: int, workers: int, envs_per_worker: int) -> int:
    """Episodes per batched task: at most envs_per_worker, and enough tasks to keep every worker busy."""
    return max(1, min(envs_per_worker, -(-n_tasks // max(1, workers))))


def batch_of(tasks: list[RolloutTask], executor) -> RolloutBatch:
    """One worker task for RolloutTasks of equal batch keys."""
    first = tasks[0]
    # ship_weights reads unchanged files once, and a DaskExecutor sends a bundle once: V and M travel
    # once per CMA-ES run, not per task. CMA-ES candidates need no C file.
    weights = ship_weights(executor, first.weights,
                           ("vae", "mdnrnn") if first.controller else ("vae", "mdnrnn", "controller"))
    params = None if first.params is None else np.stack([np.asarray(t.params) for t in tasks])
    return RolloutBatch(first.env, weights, [t.seed for t in tasks], first.controller, params, first.max_steps,
                        first.stall_steps)


def run_rollouts(tasks: list[RolloutTask], *, workers: int | None = None, executor=None, desc: str = "rollouts",
                 progress: bool = True, envs_per_worker: int = 8) -> np.ndarray:
    """Play RolloutTasks; returns an array (len(tasks), 2) of (return, steps), in the order of tasks.

    Consecutive tasks with the same batch key are grouped into batches of up to `envs_per_worker`
    episodes, each played side by side in one worker.

    Introduced in chapter 7.
    """
    out = np.zeros((len(tasks), 2))
    with open_executor(executor, workers, len(tasks)) as ex:
        k = group_size(len(tasks), executor_workers(ex, resolve_workers(workers)), envs_per_worker)
        groups: list[list[int]] = []
        for i, task in enumerate(tasks):
            if groups and len(groups[-1]) < k and tasks[groups[-1][0]].batch_key() == task.batch_key():
                groups[-1].append(i)
            else:
                groups.append([i])
        batches = [batch_of([tasks[i] for i in group], ex) for group in groups]
        for g, results in run_tasks(rollout_task, batches, ex, desc=desc, progress=progress):
            for i, res in zip(groups[g], results):
                out[i] = res
    return out


def real_returns(env: str, weights, controller: ControllerConfig, solutions, seeds, *, max_steps: int | None = None,
                 stall_steps: int | None = None, executor=None, desc: str = "rollouts", progress: bool = True,
                 steps_out: list | None = None) -> np.ndarray:
    """Every candidate in solutions (pop, P) plays the real episodes of `seeds`: returns (pop, len(seeds)).

    CMA-ES's fitness in the real game (dream_returns is the dream's), V and M read from `weights`.
    """
    ccfg = dataclasses.asdict(controller)
    tasks = [RolloutTask(env, str(weights), seed, controller=ccfg, params=p, max_steps=max_steps,
                         stall_steps=stall_steps) for p in solutions for seed in seeds]
    res = run_rollouts(tasks, executor=executor, desc=desc, progress=progress)
    if steps_out is not None:  # the env-steps played, for whoever counts the cost
        steps_out.append(int(res[:, 1].sum()))
    return res[:, 0].reshape(len(solutions), len(seeds))


def evaluate(env: str, weights: Path, episodes: int, *, seed: int = 0, max_steps: int | None = None,
             workers: int | None = None, executor=None, progress: bool = True) -> dict:
    """Evaluate the agent stored in `weights` on `episodes` real episodes. Chapter 7."""
    if not isinstance(episodes, numbers.Integral) or episodes < 1:
        raise WMError(f"evaluate needs at least 1 episode, got {episodes!r}; the paper scores over 100")
    load_agent(Path(weights), env)  # fail here, with a clear error, rather than in a worker
    tasks = [RolloutTask(env, str(weights), eval_seed(seed, i), max_steps=max_steps) for i in range(episodes)]
    res = run_rollouts(tasks, workers=workers, executor=executor, desc=f"evaluate {env}", progress=progress)
    returns = res[:, 0]
    return {"env": env, "weights": str(weights), "episodes": episodes, "seed": seed,
            "mean": float(returns.mean()), "std": float(returns.std()), "returns": returns.tolist(),
            "steps": res[:, 1].astype(int).tolist()}
