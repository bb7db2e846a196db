"""A training job for the resume tests: python tests/resume_job.py {vae,mdnrnn} DATA_DIR OUT_DIR.

Checkpoints after every block / step, so that a kill -9 at any moment has something to resume from.
"""
import sys
from pathlib import Path

import torch

from wmlib.mdnrnn import MDNRNNConfig
from wmlib.train_mdnrnn import MDNTrainConfig
from wmlib.train_vae import VAETrainConfig
from wmlib.series import pack_series
from wmlib.train_mdnrnn import train_mdnrnn
from wmlib.train_vae import train_vae
from wmlib.vae import VAEConfig

torch.set_num_threads(1)  # the same thread count in every run keeps CPU results bit-identical
stage, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
quiet = lambda m: None
if stage == "vae":
    train_vae(data, out, "doom", config=VAEConfig(z_size=64),
              train=VAETrainConfig(epochs=2, batch_size=16, lr=1e-3, block_episodes=1, checkpoint_every_s=0),
              seed=3, device="cpu", progress=False, log=quiet)
else:
    train_mdnrnn(pack_series(data), out, "doom",
                 config=MDNRNNConfig(z_size=8, action_size=1, hidden_size=32, restart_input=True, done_head=True),
                 train=MDNTrainConfig(steps=60, batch_size=4, seq_len=20, lr=1e-3, min_lr=1e-5, lr_decay=0.999,
                                      checkpoint_every_s=0),
                 seed=3, device="cpu", progress=False, log=quiet)
