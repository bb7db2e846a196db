"""Dream versus reality: how long fixed policies survive in M's dream and in the real game.

Run this before training any controller in a dream. If the no-op policy survives much longer in
the dream than in the game, or random controllers reach the 2,100-step cap there, the dream is too
easy and a controller trained in it will learn to exploit M's mistakes rather than to dodge
fireballs. Policies: no-op, always left, always right, uniform random at every step, the data
policy (uniform random held 1-10 steps), and random controllers drawn from CMA-ES's first
generation (N(0, 0.1^2) weights on [z, c, h]).
"""
import numpy as np
import torch

from ..envs import cached_env as _cached_env
from ..controller import Controller, ControllerConfig
from ..dream import DreamModel, play_batch
from ..controller import batched_controller
from ..parallel import make_executor, resolve_workers, run_tasks
from ..rollout import eval_seed, run_rollouts

POLICIES = ("noop", "left", "right", "random", "held_random", "random_controller")


class BatchPolicy:
    """A fixed policy acting on n episodes at once; act(obs (n, d), alive idx) -> actions (n, 1)."""

    def __init__(self, name: str, n: int, seed: int, controller: ControllerConfig | None = None):
        self.name, self.rng = name, np.random.default_rng(seed)
        self.hold = np.zeros(n, int)
        self.value = np.zeros(n, np.float32)
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
            renew = self.hold[idx] == 0
            self.value[idx[renew]] = self.rng.uniform(-1, 1, renew.sum())
            self.hold[idx[renew]] = self.rng.integers(1, 11, renew.sum())
            self.hold[idx] -= 1
            a = self.value[idx]
        else:
            return batched_controller(self.controller, self.params[idx].to(obs.device), obs)
        return torch.as_tensor(a, device=obs.device).unsqueeze(-1)


@torch.no_grad()
def dream_survival(model: DreamModel, policy: str, episodes: int, tau: float, seed: int, max_steps: int = 2100,
                   controller: ControllerConfig | None = None) -> np.ndarray:
    """Steps survived in the dream by `policy` over `episodes` episodes (one batch)."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    pol = BatchPolicy(policy, episodes, seed, controller)
    return play_batch(model, lambda obs, alive: pol.act(obs, alive.cpu().numpy()), episodes, tau, gen,
                      max_steps).cpu().numpy()


def real_policy_episode(task) -> tuple[float, int]:
    """Worker: one real Doom episode with a fixed (non-controller) policy."""
    policy, seed, max_steps = task
    env = _cached_env("doom", max_steps)
    pol = BatchPolicy(policy, 1, seed)
    env.reset(seed=seed)
    idx, steps = np.array([0]), 0
    while True:
        a = pol.act(torch.zeros(1, 1), idx).numpy()[0]
        _, _, terminated, truncated, _ = env.step(a)
        steps += 1
        if terminated or truncated:
            return float(steps), steps


def dream_check(weights, episodes: int = 100, tau: float = 1.15, seed: int = 0, max_steps: int = 2100,
                workers: int | None = None, device="cpu", policies=POLICIES, progress=True, executor=None,
                real: bool = True) -> dict:
    """Survival of each policy over `episodes` episodes in the dream and (real=False: not) in the real game.

    The dream half takes seconds and changes with M; the real half takes minutes and, except for the random
    controllers (which see through V and M), does not: real=False checks a new M quickly.
    """
    model = DreamModel(weights, "doom", device)
    controller = ControllerConfig(kind=model.obs_kind if model.obs_kind != "z" else "z",
                                  z_size=model.z_size, rnn_hidden=model.mdnrnn.config.hidden_size, action_size=1)
    rows = {}
    own = real and executor is None and resolve_workers(workers) > 1
    ex = make_executor(workers) if own else executor
    try:
        for k, policy in enumerate(policies):
            dream = dream_survival(model, policy, episodes, tau, seed + k, max_steps, controller)
            rows[policy] = {"dream_mean": float(dream.mean()), "dream_std": float(dream.std()),
                            "dream_capped": float((dream >= max_steps).mean())}
            if not real:
                continue
            if policy == "random_controller":
                params = BatchPolicy(policy, episodes, seed + k, controller).params.numpy()
                tasks = [("doom", str(weights), controller.__dict__, params[i], eval_seed(seed + k, i), max_steps)
                         for i in range(episodes)]
                survived = run_rollouts(tasks, executor=ex, desc=f"real {policy}", progress=progress)[:, 1]
            else:
                tasks = [(policy, eval_seed(seed + k, i), max_steps) for i in range(episodes)]
                survived = np.zeros(episodes)
                for i, (ret, _) in run_tasks(real_policy_episode, tasks, ex, desc=f"real {policy}", progress=progress):
                    survived[i] = ret
            rows[policy].update(real_mean=float(survived.mean()), real_std=float(survived.std()))
    finally:
        if own and ex is not None:
            ex.shutdown(cancel_futures=True)
    return {"weights": str(weights), "tau": tau, "episodes": episodes, "max_steps": max_steps, "policies": rows}


def dream_check_markdown(res: dict) -> str:
    lines = [f"Survival (steps) over {res['episodes']} episodes, dream at tau = {res['tau']}:", "",
             "| policy | dream | real | dream episodes at the cap |", "|---|---:|---:|---:|"]
    for name, r in res["policies"].items():
        real = f"{r['real_mean']:.0f} ± {r['real_std']:.0f}" if "real_mean" in r else "not run"
        lines.append(f"| {name} | {r['dream_mean']:.0f} ± {r['dream_std']:.0f} | {real} | "
                     f"{100 * r['dream_capped']:.0f}% |")
    return "\n".join(lines)
