"""Ship a trained agent: V, M and C as fp16 safetensors, the first frames, and a model card.

The card records how the weights were made (command, commit, seed, data size, training time per
stage, machine) and the score measured on the *stored* fp16 weights, not on the run's fp32 ones.
"""
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_model, read_json, save_model, save_npz, write_json
from ..controller import Controller, ControllerConfig
from ..dream import load_initial_z
from ..errors import WMError
from ..mdnrnn import MDNRNN, MDNRNNConfig
from ..rollout import evaluate
from ..vae import ConvVAE, VAEConfig


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}"


def export(run_dir: Path, out: Path, env: str, *, episodes: int = 100, seed: int = 0, command: str | None = None,
           workers=None, progress=True, extra: dict | None = None, executor=None) -> dict:
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "run.json").exists():
        raise WMError(f"{run_dir} is not a wmlib run directory (no run.json); pass the --run-dir of a finished run")
    run = read_json(run_dir / "run.json")
    if run.get("env") != env:
        raise WMError(f"{run_dir} is a {run.get('env')} run, not {env}; pass --env {run.get('env')} or the run "
                      f"directory of a {env} run")
    # Everything is read (and checked) before anything is written: a bad input leaves no half export in out.
    models = [(name, *load_model(cls, cfg_cls, run_dir, name, env))
              for name, cls, cfg_cls in (("vae", ConvVAE, VAEConfig), ("mdnrnn", MDNRNN, MDNRNNConfig),
                                         ("controller", Controller, ControllerConfig))]
    m = next(model for name, model, _ in models if name == "mdnrnn")
    mu, logvar = load_initial_z(run_dir / "initial_z.npz", m.config.z_size)
    for name, model, meta in models:
        keep = {k: v for k, v in meta.items() if k not in ("format", "model", "env", "config", "history")}
        save_model(model, out, name, env, extra=keep, dtype=torch.float16)
    save_npz(out / "initial_z.npz", mu=mu, logvar=logvar)
    score = evaluate(env, out, episodes, seed=seed, workers=workers, executor=executor, progress=progress)
    episodes_dir = run_dir / "episodes"
    card = {
        "env": env, "command": command, "commit": git_commit(), "seed": run["seed"], "profile": run["profile"],
        "data": {"episodes": len(list(episodes_dir.glob("ep_*.npz"))) if episodes_dir.is_dir() else None,
                 "frames": _frames(run_dir)},
        "training_seconds": read_json(run_dir / "timings.json") if (run_dir / "timings.json").exists() else None,
        "machine": machine(),
        "score": {**{k: score[k] for k in ("mean", "std", "episodes", "seed")},
                  "returns": [round(float(r), 1) for r in score["returns"]], "steps": score["steps"]},
        "score_note": f"{episodes} real episodes with the stored fp16 weights (`python -m wmlib evaluate --env {env} "
                      f"--weights {out} --episodes {episodes} --seed {seed}`)",
        "config": run, **(extra or {}),
    }
    write_json(out / "model_card.json", card)
    return card


def _frames(run_dir: Path):
    p = run_dir / "series" / "packed" / "lengths.npy"
    return int(np.load(p).sum()) if p.exists() else None
