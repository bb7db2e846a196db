"""Training M on (mu, logvar) series: random windows, z re-sampled each batch, checkpoint, resume.

A window of `seq_len` steps starts in a random episode. Inputs are (z_t, a_t) (and, for Doom, the
restart flag on an episode's first step); targets are z_{t+1} and done_t. With a restart input the
window may run on into the following episodes (the flag tells the LSTM), as in the authors' Doom
code; without one (CarRacing) the steps after the episode's end are masked out. The z-loss is masked
on each episode's last step, whose "next frame" belongs to another episode.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import TrainingState, pick_device, save_model
from .errors import WMError, check_fields
from .mdnrnn import MDNRNN, MDNRNNConfig, done_loss, mdn_nll
from .series import load_packed
from .vae import ConvVAE


@dataclass
class MDNTrainConfig:
    """How M trains: steps, batch of windows, window length, learning-rate schedule, gradient clip. Chapter 5."""
    steps: int = 4000
    batch_size: int = 100
    seq_len: int = 999
    lr: float = 1e-3
    min_lr: float = 1e-3
    lr_decay: float = 1.0  # lr_t = (lr - min_lr) * lr_decay ** t + min_lr, as in the authors' code
    grad_clip: float = 1.0  # gradients clipped to [-1, 1] element-wise
    checkpoint_every_s: float = 60.0

    def __post_init__(self):
        check_fields(self, positive=("batch_size", "seq_len", "lr", "lr_decay", "grad_clip"),
                     non_negative=("steps", "min_lr", "checkpoint_every_s"))


class Batch(NamedTuple):
    mu: torch.Tensor  # (B, L + 1, z)
    logvar: torch.Tensor  # (B, L + 1, z)
    action: torch.Tensor  # (B, L, A)
    restart: torch.Tensor  # (B, L)
    done: torch.Tensor  # (B, L)
    z_mask: torch.Tensor  # (B, L) where z_{t+1} is a valid target
    mask: torch.Tensor  # (B, L) where the step exists at all


def sample_windows(data: dict, batch: int, seq_len: int, rng: np.random.Generator, cross_episodes: bool,
                   device) -> Batch:
    """A batch of random windows of `seq_len` steps from the packed series, with their masks. Chapter 10."""
    starts, lengths = data["starts"], data["lengths"]
    total = int(lengths.sum())
    ep = rng.integers(0, len(lengths), size=batch)
    offset = (rng.random(batch) * np.maximum(lengths[ep] - seq_len, 1)).astype(np.int64)
    pos = starts[ep][:, None] + offset[:, None] + np.arange(seq_len + 1)[None]  # (B, L + 1)
    exists = pos < total
    if not cross_episodes:
        exists &= pos < (starts[ep] + lengths[ep])[:, None]
    idx = np.minimum(pos, total - 1)
    is_first, is_last = data["is_first"], data["is_last"]
    flat = idx.reshape(-1)
    order = np.argsort(flat, kind="stable")  # memory maps read fastest in order
    def take(a):
        out = np.empty((flat.size,) + a.shape[1:], a.dtype)
        out[order] = a[flat[order]]
        return out.reshape(idx.shape + a.shape[1:])
    mu, logvar, action, done = (take(data[k]) for k in ("mu", "logvar", "action", "done"))
    step_exists = exists[:, :-1]
    z_mask = step_exists & exists[:, 1:] & ~is_last[idx[:, :-1]]
    t = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a)).to(device=device, dtype=dt)
    return Batch(t(mu), t(logvar), t(action[:, :-1]), t(is_first[idx[:, :-1]]), t(done[:, :-1]),
                 t(z_mask, torch.bool), t(step_exists, torch.bool))


def mdnrnn_loss(model: MDNRNN, b: Batch, generator: torch.Generator):
    """M's loss on a batch of windows: z re-sampled from (mu, logvar), the mixture NLL plus the done loss.

    Introduced in chapter 10.
    """
    z = ConvVAE.sample(b.mu, b.logvar, generator)  # a new z for every frame of every batch
    out = model(z[:, :-1], b.action, b.restart)
    z_loss = mdn_nll(out.logpi, out.mu, out.logsigma, z[:, 1:], b.z_mask)
    d_loss = (done_loss(out.done_logit, b.done, b.mask, model.config.done_weight)
              if model.config.done_head else torch.zeros((), device=z.device))
    return z_loss + d_loss, z_loss, d_loss


def train_mdnrnn(packed_dir: Path, out_dir: Path, env: str, *, config: MDNRNNConfig, train: MDNTrainConfig,
                 seed: int = 0, device: str | None = None, progress: bool = True, log=print,
                 start: MDNRNN | None = None, start_step: int = 0) -> MDNRNN:
    """Train M to train.steps steps, resuming from out_dir/mdnrnn.train.pt when it holds a state.

    start (with start_step, the steps it was trained for) continues an M trained elsewhere, of which only
    the weights are left (e.g. shipped ones): used when out_dir holds no training state yet, with a fresh
    optimizer; once out_dir has a state, that state wins.

    Introduced in chapter 5.
    """
    out_dir = Path(out_dir)
    data = load_packed(packed_dir)
    check_series(data, config, packed_dir)
    dev = pick_device(device)
    state = TrainingState(out_dir / "mdnrnn.train.pt", "M", train.checkpoint_every_s,
                          keys=("model", "optimizer", "rng", "generator", "step", "history"))
    # A state marked done goes on when more steps are asked for (the next round of the iterative procedure).
    finished = state.done and isinstance(state.saved["step"], int) and state.saved["step"] >= train.steps
    torch.manual_seed(seed)
    model = MDNRNN(config).to(dev)
    # No optimizer for a finished M: torch's first one imports torch._dynamo (~2 s of CPU), which every rerun
    # of a finished run (every restart of a killed one) would pay for nothing.
    opt = None if finished else torch.optim.Adam(model.parameters(), lr=train.lr)
    rng = np.random.default_rng([seed, 7])
    gen = torch.Generator(device=dev).manual_seed(seed)
    state.track(model=model, optimizer=opt, rng=rng, generator=gen)
    step, history = state.restore(step=0, history=[])
    if state.saved is None and start is not None:
        if start.config != config:
            raise WMError(f"the M to start from was built as {start.config}, not {config}: pass weights of this M")
        model.load_state_dict(start.state_dict())
        step = start_step
        log(f"continuing M from given weights at step {step} (to {train.steps}), with a fresh optimizer")
    if state.done and step >= train.steps:
        log(f"M already trained ({step} steps); delete {state.path} to train again")
        return model.eval()
    if state.saved:
        log(f"{'continuing' if state.done else 'resuming'} M at step {step} (to {train.steps})")

    model.train()
    bar = tqdm(total=train.steps, initial=step, desc="train M", disable=not progress, leave=False)
    while step < train.steps:
        lr = (train.lr - train.min_lr) * train.lr_decay ** step + train.min_lr
        for g in opt.param_groups:
            g["lr"] = lr
        b = sample_windows(data, train.batch_size, train.seq_len, rng, config.restart_input, dev)
        loss, z_loss, d_loss = mdnrnn_loss(model, b, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), train.grad_clip)
        opt.step()
        step += 1
        history.append([step, loss.item(), z_loss.item(), d_loss.item()])
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if state.due():
            state.save(step=step, history=history)
    bar.close()
    model.eval()
    save_model(model, out_dir, "mdnrnn", env, extra={"steps": step, "history": history[-50:]})
    state.save(step=step, history=history, done=True)
    log(f"M trained: {step} steps, last loss {history[-1][1]:.3f} (z {history[-1][2]:.3f}, done {history[-1][3]:.3f})")
    return model


def check_series(data: dict, config: MDNRNNConfig, packed_dir: Path) -> None:
    """The packed series fit this M: z of its size (encoded by this V), actions of its env."""
    if data["mu"].shape[1] != config.z_size:
        raise WMError(f"the series in {packed_dir} have z of size {data['mu'].shape[1]}, but M expects "
                      f"{config.z_size}; they were encoded by another V: delete them and rerun")
    if data["action"].ndim != 2 or data["action"].shape[1] != config.action_size:
        raise WMError(f"the series in {packed_dir} have actions of shape {data['action'].shape[1:]}, but M expects "
                      f"({config.action_size},); their episodes come from another env: collect this env's episodes "
                      "into a new run directory")
