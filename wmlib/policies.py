"""Data-collection policies. Each acts in the controller's space [-1, 1]^A; the env wrapper maps it.

- random_weights (CarRacing, the authors' extract.py): the full agent with untrained V and M and a
  controller whose weights are drawn anew each episode with a random scale in [0, 0.01).
- brownian (CarRacing, a public reproduction's alternative): a_{t+1} = clip(a_t + sqrt(1/50) N(0, 1))
  in the environment's own action box, which covers more of the steering range.
- held_random (Doom, the authors' doomrnn): a uniform action in [-1, 1] held for 1-10 frames.
- agent (the paper's iterative procedure): the trained agent in a weights directory, its actions
  perturbed by Gaussian noise so that new data explores around what the controller does.
"""
import numpy as np
import torch

from .errors import WMError

POLICIES = {"carracing": ("random_weights", "brownian", "agent"), "doom": ("held_random", "agent")}


class RandomWeightsPolicy:
    def __init__(self, seed: int):
        from .agent import Agent
        from .controller import Controller, ControllerConfig
        from .mdnrnn import MDNRNN, MDNRNNConfig
        from .vae import ConvVAE, VAEConfig
        rng = np.random.default_rng(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            vae, rnn = ConvVAE(VAEConfig(z_size=32)), MDNRNN(MDNRNNConfig())
            controller = Controller(ControllerConfig())
        controller.set_flat(rng.standard_normal(controller.num_params) * rng.uniform(0, 0.01))
        self.agent = Agent(vae, rnn, controller)
        self.agent.reset(1, seed)

    def act(self, frame: np.ndarray) -> np.ndarray:
        return self.agent.act(frame[None])[0]


class BrownianPolicy:
    low = np.array([-1.0, 0.0, 0.0])
    high = np.array([1.0, 1.0, 1.0])

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.env_action = self.rng.uniform(self.low, self.high)

    def act(self, frame: np.ndarray) -> np.ndarray:
        a = self.env_action
        self.env_action = np.clip(a + np.sqrt(1 / 50) * self.rng.standard_normal(3), self.low, self.high)
        # back to controller space: steer = a0, gas = (a1 + 1) / 2, brake = clip(a2, 0, 1)
        return np.array([a[0], 2 * a[1] - 1, a[2]], dtype=np.float32)


class HeldRandomPolicy:
    """One episode, or n side by side drawing from one generator (the dream check plays n at once)."""

    def __init__(self, seed: int, n: int = 1):
        self.rng = np.random.default_rng(seed)
        self.left = np.zeros(n, int)  # steps each episode still holds its action
        self.value = np.zeros(n, np.float32)

    def act_many(self, idx: np.ndarray) -> np.ndarray:
        """The actions (len(idx),) of episodes idx: a new one, held for 1-10 steps, where the last ran out."""
        renew = idx[self.left[idx] == 0]
        self.value[renew] = self.rng.uniform(-1, 1, len(renew))
        self.left[renew] = self.rng.integers(1, 11, len(renew))
        self.left[idx] -= 1
        return self.value[idx]

    def act(self, frame: np.ndarray) -> np.ndarray:
        return self.act_many(np.zeros(1, int))


class AgentPolicy:
    def __init__(self, seed: int, env: str, weights: str, noise: float):
        from .agent import cached_agent  # one agent per process, loaded once
        self.agent = cached_agent(env, weights)
        self.agent.reset(1, seed)
        self.rng, self.noise = np.random.default_rng(seed), noise

    def act(self, frame: np.ndarray) -> np.ndarray:
        a = self.agent.act(frame[None])[0]
        return np.clip(a + self.noise * self.rng.standard_normal(a.shape), -1, 1).astype(np.float32)


def make_policy(name: str, env: str, seed: int, weights: str | None = None, noise: float = 0.0):
    """A data policy by name (random_weights, brownian, held_random, agent) for env. Chapter 8."""
    if name not in POLICIES.get(env, ()):
        raise WMError(f"unknown data policy {name!r} for {env}: choose one of {', '.join(POLICIES[env])}")
    if name == "agent":
        if weights is None:
            raise WMError("the 'agent' data policy needs a weights directory with a trained V, M and C")
        return AgentPolicy(seed, env, weights, noise)
    return {"random_weights": RandomWeightsPolicy, "brownian": BrownianPolicy,
            "held_random": HeldRandomPolicy}[name](seed)
