"""The world-model agent: V encodes the frame, C acts on [z, h], M updates h. Batched over episodes.

The order within a step follows the authors' code: z_t = V(frame_t); a_t = C(z_t, h_t);
h_{t+1} = M(z_t, a_t, h_t). C reads a *sampled* z, not the mean, as the authors did.
"""
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .controller import Controller, ControllerConfig
from .mdnrnn import MDNRNN, MDNRNNConfig
from .vae import ConvVAE, VAEConfig, frames_to_tensor


class Agent:
    def __init__(self, vae: ConvVAE, mdnrnn: MDNRNN, controller: Controller, device="cpu"):
        if vae.config.z_size != mdnrnn.config.z_size or controller.config.z_size != vae.config.z_size:
            raise ValueError(f"V (z={vae.config.z_size}), M (z={mdnrnn.config.z_size}) and C "
                             f"(z={controller.config.z_size}) disagree on the latent size")
        if controller.config.rnn_hidden != mdnrnn.config.hidden_size and controller.config.kind in ("zh", "zch"):
            raise ValueError(f"C reads an LSTM of {controller.config.rnn_hidden} units, M has "
                             f"{mdnrnn.config.hidden_size}")
        self.device = torch.device(device)
        self.vae, self.mdnrnn, self.controller = (m.to(self.device).eval() for m in (vae, mdnrnn, controller))
        self.generator = torch.Generator(device=self.device)
        self.reset(1, seed=0)

    def reset(self, batch: int = 1, seed: int = 0) -> None:
        """Start `batch` new episodes: zero LSTM state, restart flag set, z-noise seeded."""
        self.state = self.mdnrnn.initial_state(batch, self.device)
        self.restart = torch.ones(batch, device=self.device)
        self.generator.manual_seed(int(seed))

    @torch.no_grad()
    def act(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 (B, 64, 64, 3) -> actions (B, A) in [-1, 1]; advances M's state."""
        mu, logvar = self.vae.encode(frames_to_tensor(frames, self.device))
        z = ConvVAE.sample(mu, logvar, self.generator)
        h, c = self.state[0][0], self.state[1][0]
        action = self.controller(self.controller.features(z, h, c))
        self.state = self.mdnrnn.step(z, action, self.restart, self.state).state
        self.restart = torch.zeros_like(self.restart)
        return action.cpu().numpy()


def load_agent(weights: Path, env: str, controller: Controller | None = None, device="cpu") -> Agent:
    """Load V and M from a run or weights directory; C too unless one is given (e.g. by CMA-ES)."""
    vae, _ = load_model(ConvVAE, VAEConfig, weights, "vae", env, device)
    mdnrnn, _ = load_model(MDNRNN, MDNRNNConfig, weights, "mdnrnn", env, device)
    if controller is None:
        controller, _ = load_model(Controller, ControllerConfig, weights, "controller", env, device)
    return Agent(vae, mdnrnn, controller, device)
