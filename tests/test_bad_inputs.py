"""A sweep of bad inputs across the command line and the public Python API.

Each case feeds one bad input (a wrong type, shape or value, a NaN, a truncated or foreign file, a
full disk) and expects a clear error: for the command line, exit code 2 and one paragraph without a
traceback; for the Python API, the expected exception type. Its message must contain the given
substrings, which say what was wrong and how to fix it. After every case nothing is half-written:
no temporary file is left in its folder, and no file is created or changed there except the
complete ones the case allows (e.g. run.json, written before a stage found its input missing).

The number of inputs tried is printed at the end of the session (tests/conftest.py).
"""
import dataclasses
import fnmatch
import io
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

import wmlib  # noqa: F401  (registers wmlib/Dream-v0)
from wmlib.agent import Agent
from wmlib.checkpoint import load_model, load_torch_state, save_model, save_npz, save_torch_state, write_json
from wmlib.cmaes import CMAESConfig
from wmlib.collect import collect
from wmlib.episodes import load_episode
from wmlib.controller import Controller, ControllerConfig
from wmlib.dream import DreamConfig, DreamEnv, DreamModel, DreamVectorEnv, dream_returns
from wmlib.envs import make_env
from wmlib.errors import WMError
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig, sample_next_z
from wmlib.collect import CollectConfig
from wmlib.train_mdnrnn import MDNTrainConfig
from wmlib.run.profiles import RunConfig, get_config
from wmlib.train_vae import VAETrainConfig
from wmlib.series import encode_series, pack_series
from wmlib.train_mdnrnn import train_mdnrnn
from wmlib.train_vae import train_vae
from wmlib.vae import ConvVAE, VAEConfig, frames_to_tensor

from .bad_input_helpers import link_tree, snapshot, temp_leftovers, under_file_limit
from .helpers import wmlib_main, write_synthetic_episodes

CLI = "exit code 2"  # the expected "error type" of a command-line case

CAR_M = MDNRNNConfig(z_size=32, action_size=3, hidden_size=16)
CAR_C = ControllerConfig(kind="zh", z_size=32, rnn_hidden=16, action_size=3)
DOOM_M = MDNRNNConfig(z_size=8, action_size=1, hidden_size=16, restart_input=True, done_head=True)
DOOM_C = ControllerConfig(kind="zch", z_size=8, rnn_hidden=16, action_size=1)


@dataclasses.dataclass
class Case:
    name: str
    feed: Callable  # feed(work folder, assets) prepares the folder, returns the call that feeds the bad input
    error: object  # CLI, or the exception type the call must raise
    needles: tuple  # substrings of the message: what was wrong, and how to fix it
    allow_new: tuple = ()  # glob patterns of complete files the failing call may create


CASES: list = []


def case(name, error, *needles, allow_new=()):
    def register(feed):
        CASES.append(Case(name, feed, error, needles, allow_new))
        return feed
    return register


def cli(*args):
    return lambda: wmlib_main(*args)


# ---- inputs the cases share ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Small trained-looking weights: CarRacing (a real V, a tiny M and C) and Doom (a tiny M, no V)."""
    root = tmp_path_factory.mktemp("assets")
    torch.manual_seed(0)
    car, doom = root / "car", root / "doom"
    save_model(ConvVAE(VAEConfig(z_size=32)), car, "vae", "carracing")
    save_model(MDNRNN(CAR_M), car, "mdnrnn", "carracing")
    save_model(Controller(CAR_C), car, "controller", "carracing")
    save_npz(car / "initial_z.npz", mu=np.zeros((3, 32), np.float32), logvar=np.zeros((3, 32), np.float32))
    write_json(car / "run.json", get_config("carracing", "smoke").to_dict())
    save_model(MDNRNN(DOOM_M), doom, "mdnrnn", "doom")
    save_npz(doom / "initial_z.npz", mu=np.zeros((4, 8), np.float32), logvar=np.zeros((4, 8), np.float32))
    return SimpleNamespace(car=car, doom=doom)


_VAE = []


def vae() -> ConvVAE:
    """One untrained V for the cases that need an instance (built once: 4 million weights)."""
    if not _VAE:
        _VAE.append(ConvVAE(VAEConfig(z_size=32)).eval())
    return _VAE[0]


def run_dir(w: Path, env="doom", profile="smoke", name="run") -> Path:
    """A run directory as `python -m wmlib` starts one (run.json only)."""
    write_json(w / name / "run.json", get_config(env, profile).to_dict())
    return w / name


def series(folder: Path, episodes=2, length=5, z=8, action=1, **override) -> Path:
    """Per-episode (mu, logvar, action, done) files and meta.json, as encode_series writes them."""
    write_json(folder / "meta.json", {"vae": "0123456789abcdef"})
    for i in range(episodes):
        arrays = dict(mu=np.zeros((length, z), np.float32), logvar=np.zeros((length, z), np.float32),
                      action=np.zeros((length, action), np.float32), done=np.zeros(length, bool))
        save_npz(folder / f"ep_{i:06d}.npz", **{**arrays, **override})
    return folder


def episode(path: Path, length=3, **override) -> Path:
    """One episode file in collect's format, with any array replaced."""
    arrays = dict(obs=np.zeros((length, 64, 64, 3), np.uint8), action=np.zeros((length, 3), np.float32),
                  reward=np.zeros(length, np.float32), done=np.zeros(length, bool))
    save_npz(path, seed=np.int64(0), policy=np.str_("random_weights"), **{**arrays, **override})
    return path


def png_bytes() -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


RANDOM_BYTES = np.random.default_rng(0).bytes(3000)


def tiny_controller(w: Path, name="controller", env="carracing", **params) -> Path:
    """A saved C (CarRacing "zh" on the tiny M), weights replaced by `params` (name -> value)."""
    c = Controller(CAR_C)
    with torch.no_grad():
        for k, v in params.items():
            dict(c.named_parameters())[k].fill_(v)
    save_model(c, w / "weights", name, env)
    return w / "weights"


# ---- the command line: arguments ----------------------------------------------------------------------

case("info --env pong", CLI, "invalid choice: 'pong'", "carracing")(lambda w, a: cli("info", "--env", "pong"))
case("collect --profile huge", CLI, "invalid choice: 'huge'", "smoke")(
    lambda w, a: cli("collect", "--env", "doom", "--profile", "huge", "--run-dir", w / "run"))
case("collect --episodes abc", CLI, "invalid int value: 'abc'", "--episodes")(
    lambda w, a: cli("collect", "--env", "doom", "--episodes", "abc", "--run-dir", w / "run"))
case("evaluate without --weights", CLI, "required", "--weights")(lambda w, a: cli("evaluate", "--env", "doom"))

for _args, _needles in [
    (["collect", "--episodes", "0"], ("--episodes", ">= 1")),
    (["collect", "--episodes", "-3"], ("--episodes", ">= 1")),
    (["collect", "--workers", "-1"], ("--workers", ">= 0")),
    (["collect", "--seed", "-1"], ("--seed", ">= 0")),
    (["train-controller", "--generations", "0"], ("--generations", ">= 1")),
    (["iterate", "--iterations", "-1"], ("--iterations", ">= 0")),
    (["run", "--episodes", "0"], ("--episodes", ">= 1")),
    (["train-controller", "--tau", "0"], ("--tau", "> 0", "1.15")),
    (["train-controller", "--tau", "-1"], ("--tau", "> 0", "1.15")),
    (["train-controller", "--tau", "nan"], ("--tau", "> 0", "1.15")),
    (["train-controller", "--tau", "inf"], ("--tau", "> 0", "1.15")),
]:
    case(" ".join(_args), CLI, *_needles)(
        lambda w, a, args=_args: cli(*args, "--env", "doom", "--profile", "smoke", "--run-dir", w / "run"))

for _args, _needles in [
    (["--episodes", "0"], ("--episodes", ">= 1")),
    (["--max-steps", "0"], ("--max-steps", ">= 1")),
    (["--workers", "-1"], ("--workers", ">= 0")),
    (["--seed", "-5"], ("--seed", ">= 0")),
]:
    case("evaluate " + " ".join(_args), CLI, *_needles)(
        lambda w, a, args=_args: cli("evaluate", "--env", "carracing", "--weights", link_tree(a.car, w / "weights"),
                                     *args))
    case("dream-check " + " ".join(_args), CLI, *_needles)(
        lambda w, a, args=_args: cli("dream-check", "--weights", link_tree(a.doom, w / "weights"), *args))

case("dream-check --tau -1", CLI, "--tau", "> 0")(
    lambda w, a: cli("dream-check", "--weights", link_tree(a.doom, w / "weights"), "--tau", "-1"))
for _taus in ["0.5,abc", "0", "", "nan,1", "-1", "1,inf"]:
    case(f"tau-sweep --taus {_taus!r}", CLI, "tau", "> 0" if _taus != "0.5,abc" else "comma-separated")(
        lambda w, a, taus=_taus: cli("tau-sweep", "--weights", link_tree(a.doom, w / "weights"), "--taus", taus))
case("tau-sweep: CarRacing weights", CLI, "holds carracing weights", "trained with --env doom")(
    lambda w, a: cli("tau-sweep", "--weights", link_tree(a.car, w / "weights"), "--taus", "1.0"))
case("ablation --kinds z,zz", CLI, "unknown controller kinds", "z, z_hidden, zh")(
    lambda w, a: cli("ablation", "--weights", link_tree(a.car, w / "weights"), "--kinds", "z,zz"))
case("ablation --generations 0", CLI, "--generations", ">= 1")(
    lambda w, a: cli("ablation", "--weights", link_tree(a.car, w / "weights"), "--generations", "0"))
case("ablation --episodes 0", CLI, "--episodes", ">= 1")(
    lambda w, a: cli("ablation", "--weights", link_tree(a.car, w / "weights"), "--episodes", "0"))
case("collect --policy bogus", CLI, "unknown data policy 'bogus'", "brownian")(
    lambda w, a: cli("collect", "--env", "carracing", "--profile", "smoke", "--run-dir", w / "run",
                     "--policy", "bogus"))
case("export --episodes 0", CLI, "--episodes", ">= 1")(
    lambda w, a: cli("export", "--env", "carracing", "--run-dir", link_tree(a.car, w / "run"), "--out", w / "out",
                     "--episodes", "0"))


# ---- the command line: weights and run directories ------------------------------------------------------

case("evaluate: --weights does not exist", CLI, "does not exist", "pass a run directory")(
    lambda w, a: cli("evaluate", "--env", "doom", "--weights", w / "nope"))
case("evaluate: --weights is an empty folder", CLI, "missing checkpoint file", "vae.safetensors", "train-vae")(
    lambda w, a: cli("evaluate", "--env", "doom", "--weights", (w / "empty").mkdir() or w / "empty"))
case("evaluate: weights without C", CLI, "controller.safetensors", "train-controller")(
    lambda w, a: cli("evaluate", "--env", "carracing", "--weights",
                     link_tree(a.car, w / "weights", skip=("controller.safetensors",))))
case("evaluate: CarRacing weights as Doom's", CLI, "trained for env 'carracing'", "--env carracing")(
    lambda w, a: cli("evaluate", "--env", "doom", "--weights", link_tree(a.car, w / "weights")))
case("dream-check: --weights does not exist", CLI, "does not exist", "pretrained/doom")(
    lambda w, a: cli("dream-check", "--weights", w / "nope"))
case("dream-check: CarRacing weights", CLI, "holds carracing weights", "trained with --env doom")(
    lambda w, a: cli("dream-check", "--weights", link_tree(a.car, w / "weights")))
case("dream-check: no initial_z.npz", CLI, "missing initial-z file", "train-mdnrnn")(
    lambda w, a: cli("dream-check", "--weights", link_tree(a.doom, w / "weights", skip=("initial_z.npz",))))


@case("ablation: Doom weights", CLI, "holds doom weights", "CarRacing run")
def _(w, a):
    write_json(w / "weights" / "vae.json", {"model": "ConvVAE", "env": "doom"})
    return cli("ablation", "--weights", w / "weights")


case("export: not a run directory", CLI, "not a wmlib run directory", "--run-dir")(
    lambda w, a: cli("export", "--env", "carracing", "--run-dir", link_tree(a.car, w / "run", skip=("run.json",)),
                     "--out", w / "out"))
case("export: a run of the other env", CLI, "is a carracing run, not doom", "--env carracing")(
    lambda w, a: cli("export", "--env", "doom", "--run-dir", link_tree(a.car, w / "run"), "--out", w / "out"))
case("export: no initial_z.npz", CLI, "initial_z.npz", "train-mdnrnn")(
    lambda w, a: cli("export", "--env", "carracing", "--run-dir",
                     link_tree(a.car, w / "run", skip=("initial_z.npz",)), "--out", w / "out"))



@case("export: NaN in initial_z.npz", CLI, "NaN or infinite first frames", "train-mdnrnn")
def _(w, a):
    run = link_tree(a.car, w / "run", skip=("initial_z.npz",))
    save_npz(run / "initial_z.npz", mu=np.full((3, 32), np.nan, np.float32), logvar=np.zeros((3, 32), np.float32))
    out = cli("export", "--env", "carracing", "--run-dir", run, "--out", w / "out")
    assert not (w / "out").exists(), "export wrote weights before it had read its inputs"
    return out


@case("collect: --run-dir is not a run directory", CLI, "not a wmlib run directory", "choose an empty or new")
def _(w, a):
    (w / "mine").mkdir()
    (w / "mine" / "notes.txt").write_text("not a run")
    return cli("collect", "--env", "doom", "--profile", "smoke", "--run-dir", w / "mine")


@case("collect: run.json is not JSON", CLI, "run.json", "not valid JSON", "delete it")
def _(w, a):
    (w / "run").mkdir()
    (w / "run" / "run.json").write_bytes(RANDOM_BYTES)
    return cli("collect", "--env", "doom", "--profile", "smoke", "--run-dir", w / "run")


@case("collect: run.json is a JSON list", CLI, "run.json", "JSON list", "delete it")
def _(w, a):
    (w / "run").mkdir()
    (w / "run" / "run.json").write_text("[1, 2, 3]")
    return cli("collect", "--env", "doom", "--profile", "smoke", "--run-dir", w / "run")


case("collect: a run of another profile", CLI, "profile='smoke'", "pass the same")(
    lambda w, a: cli("collect", "--env", "doom", "--profile", "default", "--run-dir", run_dir(w)))
case("train-vae before collect", CLI, "no episode files", "python -m wmlib collect",
     allow_new=("run/run.json", "run/timings.json"))(
    lambda w, a: cli("train-vae", "--env", "doom", "--profile", "smoke", "--run-dir", w / "run", "--no-progress"))
case("train-mdnrnn before train-vae", CLI, "vae.safetensors", "train-vae", allow_new=("run/timings.json",))(
    lambda w, a: cli("train-mdnrnn", "--env", "doom", "--profile", "smoke", "--run-dir", run_dir(w), "--no-progress"))
case("train-controller --where dream on CarRacing", CLI, "no reward", "--where real",
     allow_new=("run/timings.json",))(
    lambda w, a: cli("train-controller", "--env", "carracing", "--profile", "smoke", "--run-dir",
                     run_dir(w, "carracing"), "--where", "dream", "--no-progress"))
case("iterate on CarRacing", CLI, "iterate with --env doom", allow_new=("run/timings.json",))(
    lambda w, a: cli("iterate", "--env", "carracing", "--profile", "smoke", "--run-dir", run_dir(w, "carracing"),
                     "--iterations", "1", "--no-progress"))


@case("train-mdnrnn: a truncated episode file", CLI, "ep_000000.npz", "corrupt or incomplete", "Delete it",
      allow_new=("run/timings.json", "run/series/meta.json"))
def _(w, a):
    run = run_dir(w, "carracing")
    link_tree(a.car, run, skip=("run.json", "mdnrnn.safetensors", "mdnrnn.json", "controller.safetensors",
                                "controller.json", "initial_z.npz"))
    ep = episode(run / "episodes" / "ep_000000.npz")
    ep.write_bytes(ep.read_bytes()[:300])
    return cli("train-mdnrnn", "--env", "carracing", "--profile", "smoke", "--run-dir", run, "--no-progress")


@case("train-vae: vae.train.pt is a pickle that runs code", CLI, "refusing to load the training state", "delete it",
      allow_new=("run/timings.json",))
def _(w, a):
    episode(run_dir(w) / "episodes" / "ep_000000.npz")

    class Payload:  # unpickling it would create w/pwned
        def __reduce__(self):
            return open, (str(w / "pwned"), "w")
    torch.save({"model": Payload()}, w / "run" / "vae.train.pt")
    return cli("train-vae", "--env", "doom", "--profile", "smoke", "--run-dir", w / "run", "--no-progress")


# ---- the Python API: tensors of the wrong shape or type ----------------------------------------------------

for _name, _x in [("(B, 64, 64, 3) floats", torch.zeros(2, 64, 64, 3)), ("32x32 frames", torch.zeros(2, 3, 32, 32)),
                  ("one frame without a batch", torch.zeros(3, 64, 64))]:
    case(f"ConvVAE.encode: {_name}", ValueError, "(B, 3, 64, 64)", "frames_to_tensor")(
        lambda w, a, x=_x: lambda: vae().encode(x))
case("ConvVAE.encode: uint8 frames", ValueError, "float", "frames_to_tensor")(
    lambda w, a: lambda: vae().encode(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)))
case("ConvVAE.decode: z of the wrong size", ValueError, "(B, 32)", "z_size is 32")(
    lambda w, a: lambda: vae().decode(torch.zeros(2, 7)))
case("ConvVAE.decode: integer z", ValueError, "float latents", "(B, 32)")(
    lambda w, a: lambda: vae().decode(torch.zeros(2, 32, dtype=torch.long)))
case("frames_to_tensor: float frames", ValueError, "uint8", "(B, 64, 64, 3)")(
    lambda w, a: lambda: frames_to_tensor(np.full((2, 64, 64, 3), np.nan)))
case("frames_to_tensor: channels first", ValueError, "uint8", "(B, 64, 64, 3)")(
    lambda w, a: lambda: frames_to_tensor(np.zeros((2, 3, 64, 64), np.uint8)))

_M = MDNRNN(CAR_M)
for _name, _z, _act, _needles in [
    ("z of the wrong size", torch.zeros(2, 5, 7), torch.zeros(2, 5, 3), ("z (..., 32)", "got (2, 5, 7)")),
    ("action of the wrong size", torch.zeros(2, 5, 32), torch.zeros(2, 5, 1), ("action (..., 3)", "got")),
    ("z and action of different batches", torch.zeros(2, 5, 32), torch.zeros(3, 5, 3), ("same leading", "(3, 5, 3)")),
    ("one step instead of a sequence", torch.zeros(2, 32), torch.zeros(2, 3), ("(B, T, 32)", "MDNRNN.step")),
    ("integer z", torch.zeros(2, 5, 32, dtype=torch.long), torch.zeros(2, 5, 3), ("float z", "z.float()")),
]:
    case(f"MDNRNN.forward: {_name}", ValueError, *_needles)(lambda w, a, z=_z, act=_act: lambda: _M(z, act))
case("MDNRNN.step: a sequence instead of one step", ValueError, "(B, 32)", "MDNRNN.forward")(
    lambda w, a: lambda: _M.step(torch.zeros(2, 5, 32), torch.zeros(2, 5, 3)))
case("MDNRNN.step: action of the wrong size", ValueError, "action (..., 3)", "got (2, 1, 32) and (2, 1, 2)")(
    lambda w, a: lambda: _M.step(torch.zeros(2, 32), torch.zeros(2, 2)))
for _tau in [0.0, -1.0, float("nan"), float("inf")]:
    case(f"sample_next_z: tau={_tau}", ValueError, "tau must be a finite number > 0", "0.01")(
        lambda w, a, tau=_tau: lambda: sample_next_z(torch.zeros(1, 4, 5), torch.zeros(1, 4, 5),
                                                     torch.zeros(1, 4, 5), tau))

_C = Controller(CAR_C)
case("Controller: observation of the wrong size", ValueError, "expects inputs of size 48", "(1, 40)")(
    lambda w, a: lambda: _C(torch.zeros(1, 40)))
case("Controller.set_flat: a vector of the wrong length", ValueError, f"has {_C.num_params} parameters", "(10,)")(
    lambda w, a: lambda: _C.set_flat(np.zeros(10)))
case("Controller.set_flat: NaN", ValueError, "NaN")(
    lambda w, a: lambda: _C.set_flat(np.full(_C.num_params, np.nan)))
case("Agent: V, M and C of different latent sizes", ValueError, "disagree on the latent size", "z=8")(
    lambda w, a: lambda: Agent(vae(), MDNRNN(DOOM_M), Controller(DOOM_C)))
case("Agent.act: channels-first frames", ValueError, "uint8", "(B, 64, 64, 3)")(
    lambda w, a: lambda: Agent(vae(), MDNRNN(CAR_M), Controller(CAR_C)).act(np.zeros((1, 3, 64, 64), np.uint8)))


# ---- the Python API: configurations of the wrong type ---------------------------------------------------------

for _name, _make, _needles in [
    ("VAEConfig(z_size='32')", lambda: VAEConfig(z_size="32"), ("VAEConfig.z_size must be int", "z_size=32")),
    ("MDNRNNConfig(hidden_size=256.5)", lambda: MDNRNNConfig(hidden_size=256.5), ("hidden_size must be int", "256")),
    ("MDNRNNConfig(done_head='no')", lambda: MDNRNNConfig(done_head="no"), ("done_head must be bool", "False")),
    ("ControllerConfig(z_size=32.0)", lambda: ControllerConfig(z_size=32.0), ("z_size must be int", "32")),
    ("ControllerConfig(kind='zz')", lambda: ControllerConfig(kind="zz"), ("unknown controller kind 'zz'", "zh, z")),
    ("DreamConfig(tau='1.15')", lambda: DreamConfig(tau="1.15"), ("tau must be float", "1.15")),
    ("CMAESConfig(popsize='64')", lambda: CMAESConfig(popsize="64"), ("popsize must be int", "64")),
    ("VAETrainConfig(lr=None)", lambda: VAETrainConfig(lr=None), ("lr must be float", "0.0001")),
    ("MDNTrainConfig(steps=[10])", lambda: MDNTrainConfig(steps=[10]), ("steps must be int", "4000")),
    # ... and of the wrong range
    ("VAETrainConfig(block_episodes=0)", lambda: VAETrainConfig(block_episodes=0),
     ("VAETrainConfig.block_episodes must be > 0", "block_episodes=16")),
    ("MDNTrainConfig(lr=-1e-3)", lambda: MDNTrainConfig(lr=-1e-3), ("lr must be > 0", "lr=0.001")),
    ("CMAESConfig(popsize=0)", lambda: CMAESConfig(popsize=0), ("popsize must be > 0", "popsize=64")),
    ("CMAESConfig(sigma0=nan)", lambda: CMAESConfig(sigma0=float("nan")), ("sigma0 must be > 0", "finite")),
    ("ControllerConfig(rnn_hidden=-256)", lambda: ControllerConfig(rnn_hidden=-256), ("rnn_hidden must be > 0",)),
    ("CollectConfig(min_length=-1)", lambda: CollectConfig(min_length=-1), ("min_length must be >= 0", "min_length=0")),
    ("DreamConfig(done_mode='coin')", lambda: DreamConfig(done_mode="coin"), ("done_mode", "threshold, bernoulli")),
]:
    case(_name, ValueError, *_needles)(lambda w, a, make=_make: make)
case("RunConfig.from_dict: episodes '4'", WMError, "CollectConfig.episodes must be int", "run.json")(
    lambda w, a: lambda: RunConfig.from_dict({"env": "doom", "profile": "smoke", "collect": {"episodes": "4"}}))
case("get_config: unknown env", WMError, "unknown environment 'pong'", "--env carracing")(
    lambda w, a: lambda: get_config("pong"))
case("get_config: unknown profile", WMError, "unknown profile 'huge'", "smoke")(
    lambda w, a: lambda: get_config("doom", "huge"))
case("make_env: unknown env", WMError, "unknown environment 'pong'", "--env doom")(
    lambda w, a: lambda: make_env("pong"))
case("make_env: max_steps=0", WMError, "max_steps must be at least 1", "got 0")(
    lambda w, a: lambda: make_env("carracing", max_steps=0))
case("collect: episodes=0", WMError, "episodes must be at least 1", "got 0")(
    lambda w, a: lambda: collect("doom", w / "eps", 0))
case("collect: unknown policy", WMError, "unknown data policy 'bogus'", "held_random")(
    lambda w, a: lambda: collect("doom", w / "eps", 1, policy="bogus"))


# ---- the Python API: damaged and foreign weights files ----------------------------------------------------------

def load_c(w):
    return lambda: load_model(Controller, ControllerConfig, w / "weights", "controller", "carracing")


case("load_model: NaN weights", WMError, "NaN or infinite weights in net.weight", "retrain")(
    lambda w, a: load_c(tiny_controller(w, **{"net.weight": float("nan")}).parent))
case("load_model: infinite weights", WMError, "NaN or infinite weights in net.bias", "retrain")(
    lambda w, a: load_c(tiny_controller(w, **{"net.bias": float("inf")}).parent))


@case("load_model: truncated safetensors", WMError, "controller.safetensors", "truncated or corrupt", "delete it")
def _(w, a):
    f = tiny_controller(w) / "controller.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    return load_c(w)


@case("load_model: a PNG named .safetensors", WMError, "not a readable safetensors file", "retrain")
def _(w, a):
    (tiny_controller(w) / "controller.safetensors").write_bytes(png_bytes())
    return load_c(w)


@case("load_model: random bytes named .json", WMError, "controller.json", "not valid JSON", "delete it")
def _(w, a):
    (tiny_controller(w) / "controller.json").write_bytes(RANDOM_BYTES)
    return load_c(w)


@case("load_model: a JSON list as config", WMError, "JSON list", "delete it")
def _(w, a):
    (tiny_controller(w) / "controller.json").write_text("[]")
    return load_c(w)


@case("load_model: a string where the config needs an int", WMError, "invalid config", "z_size must be int",
      "retrain")
def _(w, a):
    meta = tiny_controller(w) / "controller.json"
    meta.write_text(meta.read_text().replace('"z_size": 32', '"z_size": "32"'))
    return load_c(w)


@case("load_model: a negative LSTM size", WMError, "invalid config", "hidden_size", "retrain")
def _(w, a):
    save_model(MDNRNN(CAR_M), w / "weights", "mdnrnn", "carracing")
    meta = w / "weights" / "mdnrnn.json"
    meta.write_text(meta.read_text().replace('"hidden_size": 16', '"hidden_size": -16'))
    return lambda: load_model(MDNRNN, MDNRNNConfig, w / "weights", "mdnrnn", "carracing")


@case("load_model: weights of another config", WMError, "does not match its config", "retrain or restore both")
def _(w, a):
    save_model(Controller(dataclasses.replace(CAR_C, kind="z")), w / "other", "controller", "carracing")
    os.replace(w / "other" / "controller.safetensors", tiny_controller(w) / "controller.safetensors")
    return load_c(w)


@case("load_model: a pair torn by a kill between its two renames", WMError, "come from different saves",
      "rerun the command that trained controller")
def _(w, a):
    old = (tiny_controller(w) / "controller.json").read_text()
    tiny_controller(w, **{"net.bias": 0.5})  # a later save of the same C: same shapes, other weights
    (w / "weights" / "controller.json").write_text(old)  # its .safetensors renamed into place, the .json not
    return load_c(w)


@case("load_model: a C saved as M", WMError, "describes a 'Controller', not a MDNRNN", "retrain or restore")
def _(w, a):
    tiny_controller(w, name="mdnrnn")
    return lambda: load_model(MDNRNN, MDNRNNConfig, w / "weights", "mdnrnn")


@case("load_model: no .json beside the weights", WMError, "missing checkpoint file", "controller.json",
      "train-controller")
def _(w, a):
    (tiny_controller(w) / "controller.json").unlink()
    return load_c(w)


@case("load_torch_state: random bytes", WMError, "cannot read the training state", "delete it")
def _(w, a):
    (w / "s.pt").write_bytes(RANDOM_BYTES)
    return lambda: load_torch_state(w / "s.pt")


@case("train_vae: a pickle of an arbitrary object as state", WMError, "refusing to load the training state",
      "delete it")
def _(w, a):
    write_synthetic_episodes(w / "eps", 1, 2)

    class Payload:  # unpickling it would create w/pwned
        def __reduce__(self):
            return open, (str(w / "pwned"), "w")
    (w / "out").mkdir()
    torch.save(Payload(), w / "out" / "vae.train.pt")
    return lambda: train_vae(w / "eps", w / "out", "doom", config=VAEConfig(64), train=VAETrainConfig(epochs=1),
                             progress=False)


@case("train_vae: a torch file that is not V's state", WMError, "not the training state", "lacks model",
      "delete it")
def _(w, a):
    write_synthetic_episodes(w / "eps", 1, 2)
    (w / "out").mkdir()
    torch.save({"step": 3}, w / "out" / "vae.train.pt")
    return lambda: train_vae(w / "eps", w / "out", "doom", config=VAEConfig(64), train=VAETrainConfig(epochs=1),
                             progress=False)


# ---- the Python API: damaged and foreign episode files ------------------------------------------------------

for _name, _override, _needles in [
    ("NaN in action", dict(action=np.full((3, 3), np.nan, np.float32)), ("NaN or infinite values in action",
                                                                       "delete it")),
    ("inf in reward", dict(reward=np.array([0, np.inf, 0], np.float32)), ("NaN or infinite values in reward",
                                                                        "delete it")),
    ("96x96 frames", dict(obs=np.zeros((3, 96, 96, 3), np.uint8)), ("(3, 96, 96, 3)", "remove it")),
    ("float frames", dict(obs=np.zeros((3, 64, 64, 3), np.float32)), ("float32", "expected uint8")),
    ("fewer actions than frames", dict(action=np.zeros((2, 3), np.float32)), ("'action': 2", "delete it")),
    ("no steps", dict(obs=np.zeros((0, 64, 64, 3), np.uint8), action=np.zeros((0, 3), np.float32),
                      reward=np.zeros(0, np.float32), done=np.zeros(0, bool)), (">= 1", "delete it")),
    ("a scalar done", dict(done=np.bool_(False)), ("'done': None", "delete it")),
]:
    case(f"load_episode: {_name}", WMError, *_needles)(
        lambda w, a, o=_override: (lambda p: lambda: load_episode(p))(episode(w / "ep_000000.npz", **o)))


@case("load_episode: missing keys", WMError, "corrupt or incomplete", "obs", "Delete it")
def _(w, a):
    save_npz(w / "ep_000000.npz", action=np.zeros((3, 3), np.float32))
    return lambda: load_episode(w / "ep_000000.npz")


@case("load_episode: random bytes named .npz", WMError, "corrupt or incomplete", "Delete it")
def _(w, a):
    (w / "ep_000000.npz").write_bytes(RANDOM_BYTES)
    return lambda: load_episode(w / "ep_000000.npz")


@case("load_episode: a pickled object array", WMError, "corrupt or incomplete", "allow_pickle", "Delete it")
def _(w, a):
    with open(w / "ep_000000.npz", "wb") as f:
        np.savez(f, obs=np.array([object()]))
    return lambda: load_episode(w / "ep_000000.npz")


@case("encode_series: NaN in float frames", WMError, "float64", "expected uint8 (T, 64, 64, 3)",
      allow_new=("series/meta.json",))
def _(w, a):
    episode(w / "eps" / "ep_000000.npz", obs=np.full((3, 64, 64, 3), np.nan))
    (w / "v.safetensors").write_bytes(b"V")
    return lambda: encode_series(vae(), w / "v.safetensors", w / "eps", w / "series", progress=False)


@case("encode_series: NaN in action", WMError, "ep_000000.npz", "NaN or infinite values in action",
      allow_new=("series/meta.json",))
def _(w, a):
    episode(w / "eps" / "ep_000000.npz", action=np.full((3, 3), np.nan, np.float32))
    (w / "v.safetensors").write_bytes(b"V")
    return lambda: encode_series(vae(), w / "v.safetensors", w / "eps", w / "series", progress=False)


@case("pack_series: a damaged series file", WMError, "ep_000001.npz", "corrupt or incomplete")
def _(w, a):
    s = series(w / "series")
    (s / "ep_000001.npz").write_bytes(RANDOM_BYTES)
    return lambda: pack_series(s)


@case("train_mdnrnn: series of another env's actions", WMError, "actions of shape (2,)", "expects (1,)",
      "new run directory")
def _(w, a):
    packed = pack_series(series(w / "series", action=2))
    return lambda: train_mdnrnn(packed, w / "out", "doom", config=DOOM_M,
                                train=MDNTrainConfig(steps=1, batch_size=1, seq_len=2), progress=False)


# ---- the Python API: the dream ---------------------------------------------------------------------------------

def doom_weights(w, a, skip=()):
    return link_tree(a.doom, w / "weights", skip)


def with_weights(which: str, make, skip=()):
    """A feed: link the CarRacing or Doom weights ("car", "doom") into the folder; make(weights) is the call."""
    def feed(w, a):
        weights = link_tree(getattr(a, which), w / "weights", skip)
        return lambda: make(weights)
    return feed


case("Dream-v0: weights do not exist", WMError, "does not exist", "pretrained/doom")(
    lambda w, a: lambda: gym.make("wmlib/Dream-v0", weights=w / "nope"))
case("Dream-v0: a CarRacing M in a Doom dream", WMError, "holds carracing weights", "done head", "--env doom")(
    with_weights("car", lambda p: gym.make("wmlib/Dream-v0", weights=p, env="doom")))


@case("Dream-v0: a Doom M without a done head", WMError, "no done head", "--env doom")
def _(w, a):
    save_model(MDNRNN(dataclasses.replace(DOOM_M, done_head=False)), w / "weights", "mdnrnn", "doom")
    link_tree(a.doom, w / "weights", skip=("mdnrnn.safetensors", "mdnrnn.json"))
    return lambda: gym.make("wmlib/Dream-v0", weights=w / "weights")


case("Dream-v0: no initial_z.npz", WMError, "missing initial-z file", "train-mdnrnn")(
    with_weights("doom", lambda p: gym.make("wmlib/Dream-v0", weights=p), skip=("initial_z.npz",)))


@case("Dream-v0: initial_z.npz is random bytes", WMError, "initial_z.npz is corrupt", "train-mdnrnn")
def _(w, a):
    (doom_weights(w, a, skip=("initial_z.npz",)) / "initial_z.npz").write_bytes(RANDOM_BYTES)
    return lambda: gym.make("wmlib/Dream-v0", weights=w / "weights")


@case("Dream-v0: initial_z.npz of another V", WMError, "expects z of size 8", "train-mdnrnn")
def _(w, a):
    save_npz(doom_weights(w, a, skip=("initial_z.npz",)) / "initial_z.npz", mu=np.zeros((4, 32)),
             logvar=np.zeros((4, 32)))
    return lambda: gym.make("wmlib/Dream-v0", weights=w / "weights")


@case("Dream-v0: NaN in initial_z.npz", WMError, "NaN or infinite first frames", "train-mdnrnn")
def _(w, a):
    save_npz(doom_weights(w, a, skip=("initial_z.npz",)) / "initial_z.npz", mu=np.full((4, 8), np.nan),
             logvar=np.zeros((4, 8)))
    return lambda: gym.make("wmlib/Dream-v0", weights=w / "weights")


for _kw, _needles in [(dict(tau=0), ("tau must be a number > 0", "1.15")),
                      (dict(tau="1.15"), ("tau must be a number > 0", "1.15")),
                      (dict(tau=float("inf")), ("tau must be a number > 0", "1.15")),
                      (dict(done_mode="sometimes"), ("done_mode must be one of threshold, bernoulli", "sometimes")),
                      (dict(max_steps=0), ("max_steps must be a whole number >= 1", "2100")),
                      (dict(max_steps="abc"), ("max_steps must be a whole number >= 1", "'abc'"))]:
    case(f"Dream-v0: {_kw}", WMError, *_needles)(
        with_weights("doom", lambda p, kw=_kw: gym.make("wmlib/Dream-v0", weights=p, **kw)))
case("DreamEnv: render_mode='ansi'", WMError, "render_mode must be None or 'rgb_array'", "'ansi'")(
    with_weights("doom", lambda p: DreamEnv(p, render_mode="ansi")))
case("DreamVectorEnv: num_envs=0", WMError, "num_envs must be at least 1", "got 0")(
    with_weights("doom", lambda p: DreamVectorEnv(p, 0)))


@case("DreamEnv.step: an action of the wrong size", ValueError, "action (..., 1)", "(1, 1, 3)")
def _(w, a):
    env = DreamEnv(doom_weights(w, a))
    env.reset(seed=0)
    return lambda: env.step(np.zeros(3, np.float32))


case("dream_returns: a controller for another M", WMError, "reads 48 inputs", "rnn_hidden=16")(
    with_weights("doom", lambda p: dream_returns(DreamModel(p), CAR_C, np.zeros((2, Controller(CAR_C).num_params)),
                                                 rollouts=1, dream=DreamConfig(tau=1.15, max_steps=10), seed=0)))
case("dream_returns: solutions of the wrong length", WMError, "solutions must have shape (population, 40)", "(2, 7)")(
    with_weights("doom", lambda p: dream_returns(DreamModel(p), DOOM_C, np.zeros((2, 7)), rollouts=1,
                                                 dream=DreamConfig(tau=1.15, max_steps=10), seed=0)))


# ---- the writers: objects they cannot store ------------------------------------------------------------------

@case("save_npz: an object array", ValueError, "array of Python objects", "convert it")
def _(w, a):
    save_npz(w / "e.npz", x=np.arange(3))
    return lambda: save_npz(w / "e.npz", x=np.array([{"a": 1}], dtype=object))


@case("write_json: a numpy number", TypeError, "j.json", "not JSON serializable", "float(x)")
def _(w, a):
    write_json(w / "j.json", {"a": 1})
    return lambda: write_json(w / "j.json", {"a": np.float32(1.5)})


@case("save_model: extra of a numpy array", TypeError, "controller.json", "not JSON serializable", "tolist()")
def _(w, a):
    tiny_controller(w)
    return lambda: save_model(Controller(CAR_C), w / "weights", "controller", "carracing", extra={"x": np.zeros(2)})


# ---- a disk that fills up: writes beyond a file size limit fail (EFBIG), in a forked child ---------------------

DISK_FULL = ("could not write", "the disk is full", "free some disk space")


@case("disk full: save_model (weights)", WMError, "mdnrnn.safetensors", *DISK_FULL)
def _(w, a):
    save_model(MDNRNN(CAR_M), w / "weights", "mdnrnn", "carracing")  # the previous version, to be kept
    return lambda: under_file_limit(4096, lambda: save_model(MDNRNN(CAR_M), w / "weights", "mdnrnn", "carracing"))


@case("disk full: save_model (its .json)", WMError, "controller.json", *DISK_FULL)
def _(w, a):
    tiny_controller(w)  # the previous pair, to be kept: a new .safetensors beside the old .json is half-written
    return lambda: under_file_limit(4096, lambda: save_model(Controller(CAR_C), w / "weights", "controller",
                                                             "carracing", extra={"history": list(range(5000))}))


@case("disk full: save_npz (an episode)", WMError, "ep_000000.npz", *DISK_FULL)
def _(w, a):
    episode(w / "ep_000000.npz", length=1)
    big = np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)
    return lambda: under_file_limit(8192, lambda: episode(w / "ep_000000.npz", length=20, obs=big))


@case("disk full: write_json", WMError, "j.json", *DISK_FULL)
def _(w, a):
    write_json(w / "j.json", {"a": 1})
    return lambda: under_file_limit(1024, lambda: write_json(w / "j.json", {"a": list(range(1000))}))


@case("disk full: save_torch_state", WMError, "vae.train.pt", *DISK_FULL)
def _(w, a):
    save_torch_state(w / "vae.train.pt", {"step": 1})
    return lambda: under_file_limit(4096, lambda: save_torch_state(w / "vae.train.pt", {"x": torch.rand(10000)}))


@case("disk full: pack_series", WMError, "packed", *DISK_FULL)
def _(w, a):
    s = series(w / "series", episodes=2, length=50)
    return lambda: under_file_limit(100, lambda: pack_series(s))


case("disk full: python -m wmlib collect", CLI, "run.json", *DISK_FULL)(
    lambda w, a: lambda: under_file_limit(512, cli("collect", "--env", "carracing", "--profile", "smoke",
                                                   "--run-dir", w / "run", "--no-progress")))


@case("disk full: python -m wmlib export over a previous export", CLI, "vae.safetensors", *DISK_FULL)
def _(w, a):
    link_tree(a.car, w / "out", skip=("run.json", "initial_z.npz"))  # the previous export, to be kept
    run = link_tree(a.car, w / "run")
    return lambda: under_file_limit(1 << 20, cli("export", "--env", "carracing", "--run-dir", run, "--out", w / "out",
                                                 "--episodes", "1", "--no-progress"))


# ---- the sweep ------------------------------------------------------------------------------------------------

SWEEP = {"tried": 0, "clear": 0}


@pytest.fixture(scope="module", autouse=True)
def _count(request):
    request.config._wmlib_bad_inputs = SWEEP  # tests/conftest.py prints it at the end of the session


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path, assets):
    w = tmp_path / "work"
    w.mkdir()
    feed = case.feed(w, assets)
    before = snapshot(w)
    SWEEP["tried"] += 1
    if case.error is CLI:
        r = feed()
        message = r.stderr
        assert r.returncode == 2, f"exit code {r.returncode}; stdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-3000:]}"
        assert "Traceback" not in message, message
        assert sum(line.startswith("error: ") for line in message.splitlines()) <= 1, message
    else:
        with pytest.raises(case.error) as e:
            feed()
        message = str(e.value)
    missing = [n for n in case.needles if n not in message]
    assert not missing, f"{missing} not in the message:\n{message}"
    assert not temp_leftovers(w), f"temporary files left behind: {temp_leftovers(w)}"
    after = snapshot(w)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"a failing call changed or removed {changed}"
    new = sorted(k for k in after.keys() - before.keys() if not any(fnmatch.fnmatch(k, p) for p in case.allow_new))
    assert not new, f"a failing call left new files {new}"
    SWEEP["clear"] += 1


def test_the_sweep_is_broad():
    """The issue asks for a sweep, not a sample: keep it from shrinking unnoticed."""
    assert len(CASES) >= 100, len(CASES)
    assert len({c.name for c in CASES}) == len(CASES), "two cases share a name"
    assert sum(c.error is CLI for c in CASES) >= 40
