"""C: the tiny policy trained with CMA-ES.

Kinds (the paper's main model and its ablations):
- "zh":       a = tanh(W [z, h] + b)            CarRacing, 288 x 3 + 3 = 867 parameters
- "z":        a = tanh(W z + b)                 V only, 32 x 3 + 3 = 99
- "z_hidden": a = tanh(W2 tanh(W1 z + b1) + b2) V only with 40 hidden units, 1,443
- "zch":      a = tanh(W [z, c, h])             Doom: LSTM cell and output, no bias, 1,088

CMA-ES sees the controller as one flat vector; `get_flat` / `set_flat` convert both ways.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .errors import check_fields

KINDS = ("zh", "z", "z_hidden", "zch")
# What each kind reads: z alone, [z, h] or [z, c, h]. These three are also the dream's observations.
READS = {"zh": "zh", "z": "z", "z_hidden": "z", "zch": "zch"}


def controller_input(kind: str, z: torch.Tensor, h: torch.Tensor | None = None, c: torch.Tensor | None = None):
    """C's input for a controller of `kind` (or for what it reads, "z", "zh" or "zch"): z (B, z) alone,
    [z, h] or [z, c, h], with M's LSTM output h and cell c (B, H) from before this step's action."""
    reads = READS[kind]
    if reads == "z":
        return z
    if reads == "zh":
        return torch.cat([z, h], dim=-1)
    return torch.cat([z, c, h], dim=-1)


@dataclass
class ControllerConfig:
    """C's shape: what it reads (z, z + h, z + c + h, or z through a hidden layer) and how many actions it makes.

    Introduced in chapter 1.
    """
    kind: str = "zh"
    z_size: int = 32
    rnn_hidden: int = 256  # M's LSTM size
    action_size: int = 3
    hidden_units: int = 40  # only for "z_hidden"

    def __post_init__(self):
        check_fields(self, positive=("z_size", "rnn_hidden", "action_size", "hidden_units"))
        if self.kind not in KINDS:
            raise ValueError(f"unknown controller kind {self.kind!r}; choose one of {', '.join(KINDS)}")

    @property
    def input_size(self) -> int:
        extra = {"zh": self.rnn_hidden, "z": 0, "z_hidden": 0, "zch": 2 * self.rnn_hidden}[self.kind]
        return self.z_size + extra


class Controller(nn.Module):
    """C: a linear map (or one hidden layer) from [z, h] (or z, or [z, c, h]) to actions in [-1, 1].

    Introduced in chapter 1.
    """
    def __init__(self, config: ControllerConfig = ControllerConfig()):
        super().__init__()
        self.config = config
        c = config
        if c.kind == "z_hidden":
            self.net = nn.Sequential(nn.Linear(c.input_size, c.hidden_units), nn.Tanh(),
                                     nn.Linear(c.hidden_units, c.action_size))
        else:
            self.net = nn.Linear(c.input_size, c.action_size, bias=c.kind != "zch")

    def features(self, z: torch.Tensor, h: torch.Tensor | None = None, c: torch.Tensor | None = None):
        """Assemble the input this kind reads from z (B, z) and M's LSTM state h, c (B, H)."""
        return controller_input(self.config.kind, z, h, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, input_size) -> actions (B, action_size) in [-1, 1]."""
        if x.shape[-1] != self.config.input_size:
            raise ValueError(f"controller {self.config.kind!r} expects inputs of size {self.config.input_size}, "
                             f"got {tuple(x.shape)}")
        return torch.tanh(self.net(x))

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def get_flat(self) -> np.ndarray:
        return nn.utils.parameters_to_vector(self.parameters()).detach().cpu().double().numpy()

    def set_flat(self, flat) -> "Controller":
        flat = np.asarray(flat, dtype=np.float64)
        if flat.shape != (self.num_params,):
            raise ValueError(f"controller {self.config.kind!r} has {self.num_params} parameters, "
                             f"got a vector of shape {flat.shape}")
        if not np.all(np.isfinite(flat)):
            raise ValueError("controller parameters contain NaN or infinity")
        vec = torch.as_tensor(flat, dtype=torch.float32, device=next(self.parameters()).device)
        nn.utils.vector_to_parameters(vec, self.parameters())
        return self


def batched_controller(config: ControllerConfig, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply N controllers at once: params (N, P) flat vectors (Controller.get_flat order), x (N, in) -> (N, A).

    The same computation as Controller.forward, with one weight matrix per row (einsum, no Python
    loop over candidates).
    """
    n_in, A = config.input_size, config.action_size

    def linear(offset, fan_in, fan_out, bias):
        W = params[:, offset:offset + fan_in * fan_out].view(-1, fan_out, fan_in)
        offset += fan_in * fan_out
        b = None
        if bias:
            b = params[:, offset:offset + fan_out]
            offset += fan_out
        return W, b, offset

    def apply(W, b, v):
        y = torch.einsum("noi,ni->no", W, v)
        return y if b is None else y + b

    if config.kind == "z_hidden":
        W1, b1, o = linear(0, n_in, config.hidden_units, True)
        W2, b2, o = linear(o, config.hidden_units, A, True)
        return torch.tanh(apply(W2, b2, torch.tanh(apply(W1, b1, x))))
    W, b, o = linear(0, n_in, A, config.kind != "zch")
    return torch.tanh(apply(W, b, x))
