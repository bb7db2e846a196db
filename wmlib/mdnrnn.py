"""M: the MDN-RNN that models P(z_{t+1} | a_t, z_t, h_t).

An LSTM reads [z_t, a_t] (plus a restart flag for Doom) and a linear head turns its output h_t into,
for every latent dimension independently, a mixture of `num_mixtures` Gaussians: log mixture
weights, means and log standard deviations. For Doom one more output is the logit of "the episode
ends here" (trained with positive frames weighted x10, because deaths are rare).

Sampling with a temperature tau divides the mixture logits by tau (tau < 1 sharpens the choice of
component, tau > 1 flattens it) and scales the Gaussian noise by sqrt(tau). The dream's difficulty is
controlled by this one number.
"""
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import check_fields


@dataclass
class MDNRNNConfig:
    """M's shape: latent and action sizes, LSTM units, mixtures per dimension, Doom's restart input and done head.

    Introduced in chapter 5.
    """
    z_size: int = 32  # 64 for Doom
    action_size: int = 3  # 1 for Doom
    hidden_size: int = 256  # 512 for Doom
    num_mixtures: int = 5
    restart_input: bool = False  # Doom: an input flag set on an episode's first step
    done_head: bool = False  # Doom: also predict whether the episode ends
    done_weight: float = 10.0  # weight of done (positive) frames in the done loss

    def __post_init__(self):
        check_fields(self, positive=("z_size", "action_size", "hidden_size", "num_mixtures"),
                     non_negative=("done_weight",))

    @property
    def input_size(self) -> int:
        return self.z_size + self.action_size + int(self.restart_input)


class MDNOutput(NamedTuple):
    logpi: torch.Tensor  # (B, T, z, K) log mixture weights, normalised over K
    mu: torch.Tensor  # (B, T, z, K)
    logsigma: torch.Tensor  # (B, T, z, K)
    done_logit: torch.Tensor | None  # (B, T) or None without a done head
    state: tuple[torch.Tensor, torch.Tensor]  # LSTM (h, c), each (1, B, hidden)
    hidden: torch.Tensor  # (B, T, hidden) LSTM outputs h_t: what the controller sees


class MDNRNN(nn.Module):
    """M: an LSTM whose output is a mixture of Gaussians per latent dimension (and, for Doom, p(done)).

    Introduced in chapter 1.
    """
    def __init__(self, config: MDNRNNConfig = MDNRNNConfig()):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.input_size, config.hidden_size, batch_first=True)
        n_out = 3 * config.num_mixtures * config.z_size + int(config.done_head)
        self.head = nn.Linear(config.hidden_size, n_out)

    def initial_state(self, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.zeros(1, batch, self.config.hidden_size, device=device)
        return h, h.clone()

    def make_input(self, z: torch.Tensor, action: torch.Tensor, restart: torch.Tensor | None = None) -> torch.Tensor:
        """Concatenate [z, a(, restart)] along the last axis; shapes (..., z), (..., A), (...)."""
        c = self.config
        if z.shape[-1] != c.z_size or action.shape[-1] != c.action_size or z.shape[:-1] != action.shape[:-1]:
            raise ValueError(f"MDNRNN expects z (..., {c.z_size}) and action (..., {c.action_size}) with the same "
                             f"leading (batch, time) shape, got {tuple(z.shape)} and {tuple(action.shape)}")
        if not z.is_floating_point():
            raise ValueError(f"MDNRNN expects float z, got {z.dtype}; pass z as float32 (e.g. z.float())")
        parts = [z, action.to(z.dtype)]
        if c.restart_input:
            if restart is None:
                restart = torch.zeros(z.shape[:-1], device=z.device)
            parts.append(restart.to(z.dtype).unsqueeze(-1))
        return torch.cat(parts, dim=-1)

    def forward(self, z, action, restart=None, state=None) -> MDNOutput:
        """z: (B, T, z), action: (B, T, A), restart: (B, T) or None."""
        if z.dim() != 3:
            raise ValueError(f"MDNRNN.forward expects sequences z (B, T, {self.config.z_size}), got {tuple(z.shape)}; "
                             "for a single time step use MDNRNN.step with z (B, z)")
        x = self.make_input(z, action, restart)
        hidden, state = self.lstm(x, state)  # hidden: (B, T, H)
        B, T, _ = hidden.shape
        c = self.config
        out = self.head(hidden)
        mdn = out[..., : 3 * c.num_mixtures * c.z_size].view(B, T, c.z_size, 3 * c.num_mixtures)
        logit_pi, mu, logsigma = mdn.split(c.num_mixtures, dim=-1)
        logpi = F.log_softmax(logit_pi, dim=-1)
        done_logit = out[..., -1] if c.done_head else None
        return MDNOutput(logpi, mu, logsigma, done_logit, state, hidden)

    def step(self, z, action, restart=None, state=None) -> MDNOutput:
        """One time step for a batch: z (B, z), action (B, A) -> outputs with T = 1."""
        if z.dim() != 2:
            raise ValueError(f"MDNRNN.step expects one step for a batch, z (B, {self.config.z_size}), got "
                             f"{tuple(z.shape)}; for sequences (B, T, z) use MDNRNN.forward")
        return self.forward(z.unsqueeze(1), action.unsqueeze(1),
                            None if restart is None else restart.unsqueeze(1), state)

    def paper_param_count(self) -> int:
        """The paper counts one LSTM bias vector; PyTorch keeps two (b_ih and b_hh)."""
        return sum(p.numel() for p in self.parameters()) - 4 * self.config.hidden_size


def mdn_nll(logpi, mu, logsigma, target, mask=None) -> torch.Tensor:
    """Mean negative log-likelihood of target (B, T, z) under per-dimension mixtures (B, T, z, K).

    -log sum_k pi_k N(target | mu_k, sigma_k), averaged over latent dims and the steps where mask
    (B, T) is true. Computed in log space (logsumexp) so that tiny sigmas do not underflow.

    Introduced in chapter 4.
    """
    x = target.unsqueeze(-1)
    log_normal = -0.5 * ((x - mu) / logsigma.exp()).pow(2) - logsigma - 0.5 * math.log(2 * math.pi)
    nll = -torch.logsumexp(logpi + log_normal, dim=-1)  # (B, T, z)
    if mask is None:
        return nll.mean()
    m = mask.to(nll.dtype).unsqueeze(-1).expand_as(nll)
    return (nll * m).sum() / m.sum().clamp(min=1)


def done_loss(done_logit, done_target, mask=None, pos_weight: float = 10.0) -> torch.Tensor:
    """Sigmoid cross-entropy on the done logit, done frames weighted by pos_weight."""
    w = torch.tensor(pos_weight, device=done_logit.device)
    loss = F.binary_cross_entropy_with_logits(done_logit, done_target.to(done_logit.dtype),
                                              pos_weight=w, reduction="none")
    if mask is None:
        return loss.mean()
    m = mask.to(loss.dtype)
    return (loss * m).sum() / m.sum().clamp(min=1)


def sample_next_z(logpi, mu, logsigma, tau: float = 1.0, generator: torch.Generator | None = None):
    """Sample z (..., z) from mixtures (..., z, K) at temperature tau.

    tau -> 0 picks the most likely component and returns its mean; tau = 1 samples the model as
    trained; tau > 1 makes rare components (fireballs, sharp turns) more likely and noisier.

    Introduced in chapter 4.
    """
    if not 0 < tau < math.inf:  # nan fails both comparisons; inf would draw infinite z
        raise ValueError(f"temperature tau must be a finite number > 0, got {tau}; use a small value such as 0.01 "
                         "for a near-deterministic dream")
    probs = F.softmax(logpi / tau, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    k = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1] + (1,))
    mu_k = mu.gather(-1, k).squeeze(-1)
    sigma_k = logsigma.gather(-1, k).squeeze(-1).exp()
    eps = torch.randn(mu_k.shape, generator=generator, device=mu_k.device, dtype=mu_k.dtype)
    return mu_k + sigma_k * eps * math.sqrt(tau)
