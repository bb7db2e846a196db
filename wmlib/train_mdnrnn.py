"""Training M on (mu, logvar) series: random windows, z re-sampled each batch, checkpoint, resume.

A window of `seq_len` steps starts in a random episode. Inputs are (z_t, a_t) (and, for Doom, the
restart flag on an episode's first step); targets are z_{t+1} and done_t. With a restart input the
window may run on into the following episodes (the flag tells the LSTM), as in the authors' Doom
code; without one (CarRacing) the steps after the episode's end are masked out. The z-loss is masked
on each episode's last step, whose "next frame" belongs to another episode.
"""
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import load_torch_state, pick_device, save_model, save_torch_state
from .errors import WMError, check_fields
from .mdnrnn import MDNRNN, MDNRNNConfig, done_loss, mdn_nll
from .series import load_packed


@dataclass
class MDNTrainConfig:
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
    z = b.mu + torch.exp(0.5 * b.logvar) * torch.randn(b.mu.shape, generator=generator, device=b.mu.device)
    out = model(z[:, :-1], b.action, b.restart)
    z_loss = mdn_nll(out.logpi, out.mu, out.logsigma, z[:, 1:], b.z_mask)
    d_loss = (done_loss(out.done_logit, b.done, b.mask, model.config.done_weight)
              if model.config.done_head else torch.zeros((), device=z.device))
    return z_loss + d_loss, z_loss, d_loss


def train_mdnrnn(packed_dir: Path, out_dir: Path, env: str, config: MDNRNNConfig, train: MDNTrainConfig,
                 seed: int = 0, device: str | None = None, progress: bool = True, log=print,
                 start: MDNRNN | None = None, start_step: int = 0) -> MDNRNN:
    """Train M to train.steps steps, resuming from out_dir/mdnrnn.train.pt when it holds a state.

    start (with start_step, the steps it was trained for) continues an M trained elsewhere, of which only
    the weights are left (e.g. shipped ones): used when out_dir holds no training state yet, with a fresh
    optimizer; once out_dir has a state, that state wins.
    """
    out_dir = Path(out_dir)
    data = load_packed(packed_dir)
    if data["mu"].shape[1] != config.z_size:
        raise WMError(f"the series in {packed_dir} have z of size {data['mu'].shape[1]}, but M expects "
                      f"{config.z_size}; they were encoded by another V: delete them and rerun")
    if data["action"].ndim != 2 or data["action"].shape[1] != config.action_size:
        raise WMError(f"the series in {packed_dir} have actions of shape {data['action'].shape[1:]}, but M expects "
                      f"({config.action_size},); their episodes come from another env: collect this env's episodes "
                      "into a new run directory")
    dev = pick_device(device)
    state_path = out_dir / "mdnrnn.train.pt"
    # A saved state is read (and checked) before anything is built: a damaged one fails at once.
    s = load_torch_state(state_path, ("model", "optimizer", "rng", "generator", "step", "history")) \
        if state_path.exists() else None
    torch.manual_seed(seed)
    model = MDNRNN(config).to(dev)
    # No optimizer for a finished M: torch's first one imports torch._dynamo (~2 s of CPU), which every rerun
    # of a finished run (every restart of a killed one) would pay for nothing.
    finished = s is not None and s.get("done") and isinstance(s["step"], int) and s["step"] >= train.steps
    opt = None if finished else torch.optim.Adam(model.parameters(), lr=train.lr)
    rng = np.random.default_rng([seed, 7])
    gen = torch.Generator(device=dev).manual_seed(seed)
    step, history = 0, []
    if s is None and start is not None:
        if start.config != config:
            raise WMError(f"the M to start from was built as {start.config}, not {config}: pass weights of this M")
        model.load_state_dict(start.state_dict())
        step = start_step
        log(f"continuing M from given weights at step {step} (to {train.steps}), with a fresh optimizer")
    if s is not None:
        try:
            model.load_state_dict(s["model"])
            if opt is not None:
                opt.load_state_dict(s["optimizer"])
            rng.bit_generator.state = s["rng"]
            gen.set_state(s["generator"])
            step, history = s["step"], list(s["history"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a torch file, but not M's training state
            raise WMError(f"{state_path} is not the training state of this M ({type(e).__name__}: {e}); delete it "
                          "to train M from scratch") from e
        if s.get("done") and step >= train.steps:
            log(f"M already trained ({step} steps); delete {state_path} to train again")
            return model.eval()
        log(f"{'continuing' if s.get('done') else 'resuming'} M at step {step} (to {train.steps})")

    def save(done=False):
        save_torch_state(state_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                      "rng": rng.bit_generator.state, "generator": gen.get_state(),
                                      "step": step, "history": history, "done": done})

    model.train()
    last_save = time.monotonic()
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
        if time.monotonic() - last_save >= train.checkpoint_every_s:
            save()
            last_save = time.monotonic()
    bar.close()
    model.eval()
    save_model(model, out_dir, "mdnrnn", env, extra={"steps": step, "history": history[-50:]})
    save(done=True)
    log(f"M trained: {step} steps, last loss {history[-1][1]:.3f} (z {history[-1][2]:.3f}, done {history[-1][3]:.3f})")
    return model
