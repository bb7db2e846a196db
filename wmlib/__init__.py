"""wmlib: World Models (Ha & Schmidhuber, 2018) in small PyTorch modules.

V = `ConvVAE` (vae.py), M = `MDNRNN` (mdnrnn.py), C = `Controller` (controller.py); envs.py wraps
the real games, collect.py / train_vae.py / train_mdnrnn.py / cmaes.py are the training stages and
cli.py the command line (`python -m wmlib --help`).
"""
from .controller import Controller, ControllerConfig
from .errors import WMError
from .mdnrnn import MDNRNN, MDNRNNConfig, mdn_nll, sample_next_z
from .vae import ConvVAE, VAEConfig, vae_loss

from gymnasium.envs.registration import register as _register, registry as _registry

# Registered by name: the module (pygame, Box2D) is imported only when the env is made, so a machine that
# runs only Doom needs neither.
if "wmlib/FastCarRacing-v3" not in _registry:
    _register(id="wmlib/FastCarRacing-v3", entry_point="wmlib.fast_carracing:FastCarRacing",
              max_episode_steps=1000, reward_threshold=900)
if "wmlib/Dream-v0" not in _registry:  # gymnasium.make("wmlib/Dream-v0", weights=DIR, tau=1.15)
    _register(id="wmlib/Dream-v0", entry_point="wmlib.dream:DreamEnv")

__version__ = "0.1.0"
__all__ = ["ConvVAE", "VAEConfig", "vae_loss", "MDNRNN", "MDNRNNConfig", "mdn_nll", "sample_next_z",
           "Controller", "ControllerConfig", "WMError"]
