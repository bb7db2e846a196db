"""wmlib: World Models (Ha & Schmidhuber, 2018) in small PyTorch modules, the package the book runs on.

The public API below is what the chapters import (`from wmlib import ...`; the chapters' own helpers, and the
stages and studies they drive, come from `wmlib.book`). It follows the data path: real game -> episodes ->
V -> M -> C -> evaluation or dream, then the files and the run that hold it all. `wmlib/README.md` says what
each module is for and what to open first.
"""
from gymnasium.envs.registration import register as _register, registry as _registry

from .errors import WMError
# the real games (chapter 1) and their episodes (chapter 3)
from .envs import carracing_action, doom_direction, make_env
from .collect import collect
from .episodes import list_episodes, load_episode
# V (chapters 2-3)
from .vae import ConvVAE, VAEConfig, frames_to_tensor, vae_loss
from .train_vae import VAETrainConfig, train_vae
# M (chapters 4-5)
from .mdnrnn import MDNRNN, MDNRNNConfig, mdn_nll, sample_next_z
from .train_mdnrnn import MDNTrainConfig, train_mdnrnn
# C, the agent in the real game, CMA-ES (chapters 6-7)
from .controller import Controller, ControllerConfig
from .agent import load_agent
from .rollout import RolloutTask, eval_seed, evaluate, rollout_many, run_rollouts, train_seed
from .cmaes import CMAESConfig, train_cmaes
# the dream (chapters 8-9)
from .dream import DreamConfig, DreamEnv, DreamModel, DreamVectorEnv, dream_returns
# weights on disk, and a whole run's configuration (chapters 1, 3)
from .checkpoint import load_model
from .run.profiles import RunConfig, get_config

# Registered by name: the module (pygame, Box2D) is imported only when the env is made, so a machine that
# runs only Doom needs neither.
if "wmlib/FastCarRacing-v3" not in _registry:
    _register(id="wmlib/FastCarRacing-v3", entry_point="wmlib.fast_carracing:FastCarRacing",
              max_episode_steps=1000, reward_threshold=900)
if "wmlib/Dream-v0" not in _registry:  # gymnasium.make("wmlib/Dream-v0", weights=DIR, tau=1.15)
    _register(id="wmlib/Dream-v0", entry_point="wmlib.dream:DreamEnv")

__version__ = "0.1.0"
__all__ = [
    "WMError",
    # the real games and their episodes
    "make_env", "carracing_action", "doom_direction", "collect", "list_episodes", "load_episode",
    # V
    "ConvVAE", "VAEConfig", "vae_loss", "frames_to_tensor", "VAETrainConfig", "train_vae",
    # M
    "MDNRNN", "MDNRNNConfig", "mdn_nll", "sample_next_z", "MDNTrainConfig", "train_mdnrnn",
    # C, the agent in the real game, CMA-ES
    "Controller", "ControllerConfig", "load_agent", "rollout_many", "RolloutTask", "run_rollouts", "evaluate",
    "eval_seed", "train_seed", "CMAESConfig", "train_cmaes",
    # the dream
    "DreamConfig", "DreamEnv", "DreamVectorEnv", "DreamModel", "dream_returns",
    # weights on disk, a whole run's configuration
    "load_model", "RunConfig", "get_config",
]
