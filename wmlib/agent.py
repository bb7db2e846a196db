"""The world-model agent: V encodes the frame, C acts on [z, h], M updates h. Batched over episodes.

The order within a step follows the authors' code: z_t = V(frame_t); a_t = C(z_t, h_t);
h_{t+1} = M(z_t, a_t, h_t). C reads a *sampled* z, not the mean, as the authors did.
"""
import os
import threading
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .controller import Controller, ControllerConfig, batched_controller
from .mdnrnn import MDNRNN, MDNRNNConfig
from .parallel import local_weights
from .vae import ConvVAE, VAEConfig, frames_to_tensor


class Agent:
    """V, M and C acting on a batch of episodes at once (one forward pass of each per step).

    Each episode has its own z-noise generator, seeded by its own seed, so an episode plays the same
    whether it runs alone or beside others (up to float rounding of batched convolutions). With
    `params` (B, P), episode i acts with its own controller weights params[i] (a CMA-ES population
    evaluated in one batch); without, every episode uses self.controller.
    """

    def __init__(self, vae: ConvVAE, mdnrnn: MDNRNN, controller: Controller, device="cpu"):
        if vae.config.z_size != mdnrnn.config.z_size or controller.config.z_size != vae.config.z_size:
            raise ValueError(f"V (z={vae.config.z_size}), M (z={mdnrnn.config.z_size}) and C "
                             f"(z={controller.config.z_size}) disagree on the latent size")
        if controller.config.rnn_hidden != mdnrnn.config.hidden_size and controller.config.kind in ("zh", "zch"):
            raise ValueError(f"C reads an LSTM of {controller.config.rnn_hidden} units, M has "
                             f"{mdnrnn.config.hidden_size}")
        self.device = torch.device(device)
        self.vae, self.mdnrnn, self.controller = (m.to(self.device).eval() for m in (vae, mdnrnn, controller))
        self.reset(1, seed=0)

    def reset(self, batch: int = 1, seed=0, params=None) -> None:
        """Start `batch` new episodes: zero LSTM state, restart flag set, z-noise seeded.

        seed: one int (episode i gets seed + i) or a sequence of `batch` seeds. params: None, or
        (batch, P) flat controller parameters, one row per episode.
        """
        seeds = [int(seed) + i for i in range(batch)] if np.ndim(seed) == 0 else [int(s) for s in seed]
        if len(seeds) != batch:
            raise ValueError(f"reset got {len(seeds)} seeds for a batch of {batch}")
        self.state = self.mdnrnn.initial_state(batch, self.device)
        self.restart = torch.ones(batch, device=self.device)
        self.generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        self.params = None
        if params is not None:
            p = torch.as_tensor(np.asarray(params), dtype=torch.float32, device=self.device)
            if p.shape != (batch, self.controller.num_params):
                raise ValueError(f"params must have shape ({batch}, {self.controller.num_params}), got "
                                 f"{tuple(p.shape)}")
            self.params = p

    @property
    def batch(self) -> int:
        return len(self.generators)

    def keep(self, mask) -> None:
        """Drop the episodes where mask is False (finished ones), keeping the others' state."""
        mask = torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device)
        self.state = (self.state[0][:, mask], self.state[1][:, mask])
        self.restart = self.restart[mask]
        self.generators = [g for g, k in zip(self.generators, mask.tolist()) if k]
        if self.params is not None:
            self.params = self.params[mask]

    @torch.no_grad()
    def act(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 (B, 64, 64, 3) -> actions (B, A) in [-1, 1]; advances M's state."""
        if len(frames) != self.batch:
            raise ValueError(f"act got {len(frames)} frames for {self.batch} episodes")
        z = self.vae.sample(*self.vae.encode(frames_to_tensor(frames, self.device)), self.generators)
        h, c = self.state[0][0], self.state[1][0]
        x = self.controller.features(z, h, c)
        action = self.controller(x) if self.params is None else batched_controller(self.controller.config,
                                                                                   self.params, x)
        self.state = self.mdnrnn.step(z, action, self.restart, self.state).state
        self.restart = torch.zeros_like(self.restart)
        return action.cpu().numpy()


def load_agent(weights: Path, env: str, controller: Controller | None = None, device="cpu") -> Agent:
    """Load V and M from a run or weights directory; C too unless one is given (e.g. by CMA-ES). Chapter 7."""
    vae, _ = load_model(ConvVAE, VAEConfig, weights, "vae", env, device)
    mdnrnn, _ = load_model(MDNRNN, MDNRNNConfig, weights, "mdnrnn", env, device)
    if controller is None:
        controller, _ = load_model(Controller, ControllerConfig, weights, "controller", env, device)
    return Agent(vae, mdnrnn, controller, device)


_AGENTS = threading.local()  # per thread: a Dask worker may run several tasks at once


def cached_agent(env: str, weights, controller_config: dict | None = None) -> Agent:
    """This process's (and thread's) agent for these weights, loaded once and kept between a worker's tasks.

    weights: a path, or a WeightsBundle shipped by a DaskExecutor. controller_config: None (the weights' own
    C) or the config of a C whose parameters each task brings (a CMA-ES candidate). The weights are loaded
    again when their files change.
    """
    weights = local_weights(weights)
    files = [Path(weights) / f for f in ("vae.safetensors", "mdnrnn.safetensors", "controller.safetensors")]
    key = (env, str(weights), repr(controller_config),
           tuple(os.path.getmtime(f) if f.exists() else 0 for f in files))
    if getattr(_AGENTS, "key", None) != key:
        controller = Controller(ControllerConfig(**controller_config)) if controller_config else None
        _AGENTS.agent, _AGENTS.key = load_agent(Path(weights), env, controller), key
    return _AGENTS.agent
