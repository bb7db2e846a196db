"""Saving and loading: safetensors weights beside a JSON config, every write atomic.

A model is stored as NAME.safetensors (tensors only, so loading can never execute code) and
NAME.json ({"model", "env", "config", ...}). Writes go to a temporary file in the same folder and
are renamed into place, so a crash leaves either the old file or the new one, never half of one.
Training state for resuming (optimiser moments, RNG states) is a torch file loaded with
weights_only=True, which refuses arbitrary pickled objects.
"""
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import WMError

FORMAT_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_path(path: Path):
    """A context manager yielding a temp path in path's folder, renamed onto path on success."""
    return _AtomicPath(Path(path))


class _AtomicPath:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.chmod(self.tmp, 0o666 & ~_UMASK)  # mkstemp (and some writers) make 0600 files
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise WMError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WMError(f"{path} is not valid JSON ({e}); the file is damaged: delete it and rerun the stage "
                      "that writes it") from e


def save_npz(path: Path, **arrays) -> None:
    """np.savez_compressed, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def save_torch_state(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_torch_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: every failure means the same to the user
        raise WMError(f"cannot read the training state {path} ({type(e).__name__}: {e}); delete it to "
                      "restart that stage from scratch") from e


def save_model(model: torch.nn.Module, directory: Path, name: str, env: str, extra: dict | None = None,
               dtype: torch.dtype | None = None) -> None:
    """Write directory/name.safetensors and directory/name.json (config as a dict)."""
    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    meta = {"format": FORMAT_VERSION, "model": type(model).__name__, "env": env,
            "config": dataclasses.asdict(model.config), **(extra or {})}
    with atomic_path(directory / f"{name}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"model": meta["model"], "env": env})
    write_json(directory / f"{name}.json", meta)


def load_model(cls, config_cls, directory: Path, name: str, env: str | None = None, device="cpu"):
    """Build cls(config_cls(**json config)) and load its weights, with errors a user can act on."""
    directory = Path(directory)
    wpath, cpath = directory / f"{name}.safetensors", directory / f"{name}.json"
    if not wpath.exists() or not cpath.exists():
        missing = wpath if not wpath.exists() else cpath
        raise WMError(f"missing checkpoint file {missing}. {directory} holds no trained {name}: train it first "
                      f"(python -m wmlib {_STAGE_OF.get(name, 'run')} ...) or point --weights at a directory "
                      "that has it")
    meta = read_json(cpath)
    if meta.get("model") != cls.__name__:
        raise WMError(f"{cpath} describes a {meta.get('model')!r}, not a {cls.__name__}; the file was "
                      "overwritten or copied from elsewhere: retrain or restore it")
    if env is not None and meta.get("env") != env:
        raise WMError(f"{wpath} was trained for env {meta.get('env')!r}, but it is being used for {env!r}; "
                      f"pass --env {meta.get('env')} or use weights trained on {env}")
    try:
        config = config_cls(**meta["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise WMError(f"{cpath} has an invalid config ({e}); retrain {name} or restore the file") from e
    model = cls(config)
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise WMError(f"{wpath} is not a readable safetensors file ({e}); it is truncated or corrupt: "
                      f"delete it and retrain {name}") from e
    expected = model.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        bad = [k for k in expected if k not in tensors or tensors[k].shape != expected[k].shape]
        raise WMError(f"{wpath} does not match its config {cpath} (tensors {bad[:3]} are missing or of "
                      "another shape); the two files come from different runs: retrain or restore both")
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise WMError(f"{wpath} contains NaN or infinite weights in {k}; training diverged: retrain "
                          f"{name} (a lower learning rate helps)")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return model.to(device).eval(), meta


_STAGE_OF = {"vae": "train-vae", "mdnrnn": "train-mdnrnn", "controller": "train-controller"}
