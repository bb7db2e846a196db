"""Training V: stream frames from disk, minimise reconstruction + floored KL, checkpoint, resume.

The whole loop is here, top to bottom. State (weights, Adam moments, RNG, position in the stream)
is saved at block boundaries at most every `checkpoint_every_s` seconds and at the end; rerunning
the same command continues from the last saved block and gives the same final weights as a run that
was never interrupted (on CPU, same seed).
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import TrainingState, pick_device, save_model
from .episodes import epoch_blocks, iterate_blocks, list_episodes
from .errors import check_fields
from .vae import ConvVAE, VAEConfig, frames_to_tensor, vae_loss


@dataclass
class VAETrainConfig:
    """How V trains: epochs over the episodes, batch, learning rate, block size of the data stream. Chapter 3."""
    epochs: float = 10  # a fraction trains on the first part of one shuffled epoch
    batch_size: int = 100
    lr: float = 1e-4
    block_episodes: int = 16  # episodes decoded and shuffled together; bounds memory, not data size
    checkpoint_every_s: float = 60.0

    def __post_init__(self):
        check_fields(self, positive=("epochs", "batch_size", "lr", "block_episodes"),
                     non_negative=("checkpoint_every_s",))


def train_vae(episodes_dir: Path, out_dir: Path, env: str, *, config: VAEConfig, train: VAETrainConfig,
              seed: int = 0, device: str | None = None, progress: bool = True, log=print) -> ConvVAE:
    """Train V on the episodes in episodes_dir, resuming from out_dir/vae.train.pt when it holds a state. Chapter 3."""
    out_dir = Path(out_dir)
    files = list_episodes(episodes_dir)
    dev = pick_device(device)
    state = TrainingState(out_dir / "vae.train.pt", "V", train.checkpoint_every_s,
                          keys=("model", "optimizer", "generator", "epoch", "block", "step", "history"))
    torch.manual_seed(seed)
    model = ConvVAE(config).to(dev)
    # No optimizer for a finished V: torch's first one imports torch._dynamo (~2 s of CPU), which every rerun
    # of a finished run (every restart of a killed one) would pay for nothing.
    opt = None if state.done else torch.optim.Adam(model.parameters(), lr=train.lr)
    gen = torch.Generator(device=dev).manual_seed(seed)
    state.track(model=model, optimizer=opt, generator=gen)
    epoch, block, step, history = state.restore(epoch=0, block=0, step=0, history=[])
    if state.done:
        log(f"V already trained ({step} steps); delete {state.path} to train again")
        return model.eval()
    if state.saved:
        log(f"resuming V at epoch {epoch}, block {block} (step {step})")

    n_blocks = len(epoch_blocks(files, train.block_episodes, seed, 0))
    total_blocks = max(1, math.ceil(train.epochs * n_blocks))  # fractional epochs stop part-way
    bar = tqdm(total=total_blocks, initial=epoch * n_blocks + block, desc="train V",
               disable=not progress, leave=False)
    model.train()
    while epoch * n_blocks + block < total_blocks:
        for b, frames in iterate_blocks(files, train.block_episodes, seed, epoch, start_block=block):
            if epoch * n_blocks + b >= total_blocks:
                block = b
                break
            losses = []
            for k in range(0, len(frames), train.batch_size):
                x = frames_to_tensor(frames[k:k + train.batch_size], dev)
                loss = vae_loss(x, model(x, gen), config)
                opt.zero_grad(set_to_none=True)
                loss.loss.backward()
                opt.step()
                step += 1
                losses.append([loss.loss.item(), loss.recon.item(), loss.kl.item()])
            history.append([epoch, b, step, *np.mean(losses, axis=0).tolist()])
            bar.update()
            bar.set_postfix(loss=f"{history[-1][3]:.1f}", kl=f"{history[-1][5]:.1f}")
            block = b + 1
            if state.due():  # at a block boundary: a resumed run starts at the next block
                state.save(epoch=epoch, block=block, step=step, history=history)
        else:
            epoch, block = epoch + 1, 0
    bar.close()
    model.eval()
    save_model(model, out_dir, "vae", env, extra={"steps": step, "history": history[-50:],
                                                   "episodes": len(files)})
    state.save(epoch=epoch, block=block, step=step, history=history, done=True)
    log(f"V trained: {step} steps, last loss {history[-1][3]:.1f} (recon {history[-1][4]:.1f}, kl {history[-1][5]:.1f})")
    return model
