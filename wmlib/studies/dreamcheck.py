"""Dream versus reality: how long fixed policies survive in M's dream and in the real game.

Run this before training any controller in a dream. If the no-op policy survives much longer in
the dream than in the game, or random controllers reach the 2,100-step cap there, the dream is too
easy and a controller trained in it will learn to exploit M's mistakes rather than to dodge
fireballs. Policies: no-op, always left, always right, uniform random at every step, the data
policy (uniform random held 1-10 steps), and random controllers drawn from CMA-ES's first
generation (N(0, 0.1^2) weights on [z, c, h]).
"""
import dataclasses

import numpy as np
import torch

from ..collect import play_episode
from ..controller import Controller, ControllerConfig, batched_controller
from ..dream import DreamConfig, DreamModel, play_batch
from ..envs import cached_env
from ..parallel import open_executor, run_tasks
from ..policies import HeldRandomPolicy
from ..rollout import RolloutTask, eval_seed, run_rollouts

POLICIES = ("noop", "left", "right", "random", "held_random", "random_controller")


class BatchPolicy:
    """A fixed policy acting on n episodes at once; act(obs (n, d), alive idx) -> actions (n, 1). Chapter 9."""

    def __init__(self, name: str, n: int, seed: int, controller: ControllerConfig | None = None):
        self.name, self.rng = name, np.random.default_rng(seed)
        if name == "held_random":  # the data policy, as collect plays it
            self.held = HeldRandomPolicy(seed, n)
        if name == "random_controller":
            P = Controller(controller).num_params
            self.params = torch.as_tensor(self.rng.normal(0, 0.1, (n, P)), dtype=torch.float32)
            self.controller = controller

    def act(self, obs: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        n = len(idx)
        if self.name == "noop":
            a = np.zeros(n, np.float32)
        elif self.name in ("left", "right"):
            a = np.full(n, -1.0 if self.name == "left" else 1.0, np.float32)
        elif self.name == "random":
            a = self.rng.uniform(-1, 1, n).astype(np.float32)
        elif self.name == "held_random":
            a = self.held.act_many(idx)
        else:
            return batched_controller(self.controller, self.params[idx].to(obs.device), obs)
        return torch.as_tensor(a, device=obs.device).unsqueeze(-1)


@torch.no_grad()
def dream_survival(model: DreamModel, policy: str, episodes: int, *, dream: DreamConfig, seed: int,
                   controller: ControllerConfig | None = None) -> np.ndarray:
    """Steps survived in the dream by `policy` over `episodes` episodes (one batch). Chapter 8."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    pol = BatchPolicy(policy, episodes, seed, controller)
    return play_batch(model, lambda obs, alive: pol.act(obs, alive.cpu().numpy()), episodes, dream=dream,
                      generator=gen).cpu().numpy()


def real_policy_episode(task: tuple) -> tuple[float, int]:
    """Worker: one real Doom episode, (policy, seed, max_steps), with a fixed (non-controller) policy."""
    policy, seed, max_steps = task
    pol, one = BatchPolicy(policy, 1, seed), np.array([0])
    ep = play_episode(cached_env("doom", max_steps), lambda frame: pol.act(torch.zeros(1, 1), one).numpy()[0], seed)
    steps = len(ep["action"])
    return float(steps), steps


def dream_check(weights, *, episodes: int = 100, dream: DreamConfig = DreamConfig(), seed: int = 0,
                workers: int | None = None, device="cpu", policies=POLICIES, progress=True, executor=None,
                real: bool = True) -> dict:
    """Survival of each policy over `episodes` episodes in the dream and (real=False: not) in the real game,
    both capped at dream.max_steps.

    The dream half takes seconds and changes with M; the real half takes minutes and, except for the random
    controllers (which see through V and M), does not: real=False checks a new M quickly.

    Introduced in chapter 8.
    """
    model = DreamModel(weights, "doom", device)
    controller = model.controller_config()
    rows = {}
    with open_executor(executor, workers if real else 0) as ex:  # the dream half needs no workers
        for k, policy in enumerate(policies):
            steps = dream_survival(model, policy, episodes, dream=dream, seed=seed + k, controller=controller)
            rows[policy] = {"dream_mean": float(steps.mean()), "dream_std": float(steps.std()),
                            "dream_capped": float((steps >= dream.max_steps).mean())}
            if not real:
                continue
            if policy == "random_controller":
                params = BatchPolicy(policy, episodes, seed + k, controller).params.numpy()
                ccfg = dataclasses.asdict(controller)
                tasks = [RolloutTask("doom", str(weights), eval_seed(seed + k, i), controller=ccfg, params=params[i],
                                     max_steps=dream.max_steps) for i in range(episodes)]
                survived = run_rollouts(tasks, executor=ex, desc=f"real {policy}", progress=progress)[:, 1]
            else:
                tasks = [(policy, eval_seed(seed + k, i), dream.max_steps) for i in range(episodes)]
                survived = np.zeros(episodes)
                for i, (ret, _) in run_tasks(real_policy_episode, tasks, ex, desc=f"real {policy}", progress=progress):
                    survived[i] = ret
            rows[policy].update(real_mean=float(survived.mean()), real_std=float(survived.std()))
    return {"weights": str(weights), "tau": dream.tau, "episodes": episodes, "max_steps": dream.max_steps,
            "policies": rows}


def dream_check_markdown(res: dict) -> str:
    """The dream check's result as a markdown table. Chapter 8."""
    lines = [f"Survival (steps) over {res['episodes']} episodes, dream at tau = {res['tau']}:", "",
             "| policy | dream | real | dream episodes at the cap |", "|---|---:|---:|---:|"]
    for name, r in res["policies"].items():
        real = f"{r['real_mean']:.0f} ± {r['real_std']:.0f}" if "real_mean" in r else "not run"
        lines.append(f"| {name} | {r['dream_mean']:.0f} ± {r['dream_std']:.0f} | {real} | "
                     f"{100 * r['dream_capped']:.0f}% |")
    return "\n".join(lines)


@torch.no_grad()
def controller_in_dream(model, controller, n: int, *, dream, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n dream episodes of `controller` (a wmlib Controller that reads model's observation), one batch:
    the steps each survived (n,) and every action it took while alive, all episodes together (1-D).

    Introduced in chapter 9.
    """
    taken = []

    def act(obs, alive):
        a = controller(obs)
        taken.append(a[:, 0].cpu().numpy())
        return a
    gen = torch.Generator(device=model.device).manual_seed(seed)
    steps = play_batch(model, act, n, dream=dream, generator=gen).cpu().numpy()
    return steps, np.concatenate(taken)


def held_shares(actions) -> dict:
    """Shares of `actions` (Doom's, in [-1, 1]) that step left, stand still and step right, at the game's
    thresholds (+-1/3): how a controller that cheats its dream by holding one direction shows up.

    Introduced in chapter 9.
    """
    a = np.asarray(actions, dtype=np.float64).reshape(-1)
    return {"left": float((a < -1 / 3).mean()), "stay": float((np.abs(a) <= 1 / 3).mean()),
            "right": float((a > 1 / 3).mean())}
