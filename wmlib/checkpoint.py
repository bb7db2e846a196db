"""Saving and loading: safetensors weights beside a JSON config, every write atomic.

A model is stored as NAME.safetensors (tensors only, so loading can never execute code) and
NAME.json ({"model", "env", "config", ...}). Writes go to a temporary file in the same folder and
are renamed into place, so a crash leaves either the old file or the new one, never half of one.
Training state for resuming (optimiser moments, RNG states) is a torch file loaded with
weights_only=True, which refuses arbitrary pickled objects.
"""
import dataclasses
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from .errors import WMError

FORMAT_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_path(path: Path):
    """A context manager yielding a temp path in path's folder, renamed onto path on success."""
    return _AtomicPath(Path(path))


# What a full disk (or a quota, or a file size limit) looks like to a writer.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def disk_full_error(path: Path, e: OSError) -> WMError:
    return WMError(f"could not write {path}: {e.strerror} (the disk is full or a file size limit was reached); "
                   "free some disk space and rerun the same command: the previous version of the file, if any, "
                   "is untouched")


class _AtomicPath:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as e:
            if e.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(self.path, e) from e
            raise
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.chmod(self.tmp, 0o666 & ~_UMASK)  # mkstemp (and some writers) make 0600 files
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(self.path, exc) from exc
        return False


def _json_text(path: Path, obj) -> str:
    try:
        return json.dumps(obj, indent=2, sort_keys=True) + "\n"
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot write {path}: {e}; convert numpy values to Python ones first (float(x), "
                        "int(x), a.tolist())") from e


def write_json(path: Path, obj) -> None:
    text = _json_text(path, obj)  # before the temp file: an object json cannot write leaves nothing behind
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_text(path: Path, text: str) -> None:
    """A text file (a markdown table) written atomically, like every other file the library writes."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: Path) -> dict:
    """A wmlib JSON file as a dict, with a clear error if it is missing or damaged. Chapter 7."""
    path = Path(path)
    if not path.exists():
        raise WMError(f"missing file {path}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WMError(f"{path} is not valid JSON ({e}); the file is damaged: delete it and rerun the stage "
                      "that writes it") from e
    if not isinstance(obj, dict):  # every wmlib JSON file is an object; a list or number is a foreign file
        raise WMError(f"{path} holds a JSON {type(obj).__name__}, not the JSON object wmlib writes; the file is "
                      "damaged or not wmlib's: delete it and rerun the stage that writes it")
    return obj


def save_npz(path: Path, **arrays) -> None:
    """np.savez_compressed, atomically."""
    for k, a in arrays.items():  # wmlib's readers refuse pickles (allow_pickle=False): never write one
        if np.asarray(a).dtype == object:
            raise ValueError(f"cannot save {k!r} to {path}: it is an array of Python objects, which only a pickle "
                             "could store; convert it to a numeric or string array")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def save_torch_state(path: Path, state: dict) -> None:
    # Serialised in memory and written here: torch's own file writer reports a full disk as an opaque
    # RuntimeError, a plain write as an OSError that atomic_path turns into a clear error.
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def load_torch_state(path: Path, keys=()) -> dict:
    """The training state in path, a dict holding at least `keys`. Chapter 3."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: every failure means the same to the user
        if "Unsupported global" in str(e):  # a pickle of arbitrary objects; torch's long message buries the point
            raise WMError(f"refusing to load the training state {path}: it holds Python objects other than tensors "
                          "and numbers, which could run code when loaded, so wmlib did not write it; delete it to "
                          "restart that stage from scratch") from e
        raise WMError(f"cannot read the training state {path} ({type(e).__name__}: {e}); delete it to "
                      "restart that stage from scratch") from e
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise WMError(f"{path} is not the training state of this stage (it lacks {', '.join(missing)}); delete it "
                      "to restart that stage from scratch")
    return state


class TrainingState:
    """The resumable state of a training loop (V's, M's) in one torch file, saved every `every_s` seconds.

        state = TrainingState(out_dir / "vae.train.pt", "V", train.checkpoint_every_s, keys)  # reads a saved one
        state.track(model=model, optimizer=opt, generator=gen)   # what is saved and restored, by name
        step, history = state.restore(step=0, history=[])        # the start values, or the saved ones
        ...each step: if state.due(): state.save(step=step, history=history)
        state.save(step=step, history=history, done=True)       # a rerun then skips the finished loop

    A state is read (and checked for `keys`) when the object is made, before anything is built, so that a
    damaged or foreign one fails at once. Nothing is saved or restored for a tracked part that is None (a
    finished loop builds no optimizer).
    """

    def __init__(self, path: Path, name: str, every_s: float, keys=()):
        self.path, self.name, self.every_s = Path(path), name, every_s
        self.saved = load_torch_state(self.path, keys) if self.path.exists() else None
        self.done = bool(self.saved is not None and self.saved.get("done"))
        self.parts = {}
        self.last_save = time.monotonic()

    def track(self, **parts) -> None:
        """Models and optimizers (state_dict), torch and numpy generators (their RNG state)."""
        self.parts = parts

    def restore(self, **start):
        """Load the saved state into the tracked parts and return the saved values of start's keys, each made
        the type of its start value (history=[] -> a list); with no saved state, the start values."""
        if self.saved is None:
            return tuple(start.values())
        try:
            for key, part in self.parts.items():
                if part is not None:
                    _set_state(part, self.saved[key])
            return tuple(type(value)(self.saved[key]) for key, value in start.items())
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a torch file, but not this loop's state
            raise WMError(f"{self.path} is not the training state of this {self.name} ({type(e).__name__}: {e}); "
                          f"delete it to train {self.name} from scratch") from e

    def due(self) -> bool:
        return time.monotonic() - self.last_save >= self.every_s

    def save(self, done: bool = False, **values) -> None:
        parts = {key: _get_state(part) for key, part in self.parts.items()}
        save_torch_state(self.path, {**parts, **values, "done": done})
        self.last_save = time.monotonic()


def _get_state(part):
    if isinstance(part, torch.Generator):
        return part.get_state()
    if isinstance(part, np.random.Generator):
        return part.bit_generator.state
    return part.state_dict()


def _set_state(part, state) -> None:
    if isinstance(part, torch.Generator):
        part.set_state(state)
    elif isinstance(part, np.random.Generator):
        part.bit_generator.state = state
    else:
        part.load_state_dict(state)


def save_model(model: torch.nn.Module, directory: Path, name: str, env: str, extra: dict | None = None,
               dtype: torch.dtype | None = None) -> None:
    """Write directory/name.safetensors and directory/name.json (config as a dict)."""
    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    # In memory first, as in save_torch_state (safetensors' writer reports a full disk as a SafetensorError).
    data = _sorted_metadata(save(tensors, metadata={"model": type(model).__name__, "env": env}))
    # Two files cannot be renamed into place at once. The .json names the digest of the weights it belongs
    # with, so that load_model can tell a pair torn by a kill between the two renames from a real pair.
    meta = {"format": FORMAT_VERSION, "model": type(model).__name__, "env": env,
            "config": dataclasses.asdict(model.config), **(extra or {}), "weights_sha256": _sha256(data)}
    text = _json_text(directory / f"{name}.json", meta)
    # Both are written before either is renamed, so that a full disk leaves the old pair as it was.
    with atomic_path(directory / f"{name}.safetensors") as tmp:
        tmp.write_bytes(data)
        with atomic_path(directory / f"{name}.json") as tmp_json:
            tmp_json.write_text(text)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sorted_metadata(data: bytes) -> bytes:
    """safetensors bytes with the header's metadata in sorted order. safetensors writes it in the order of a
    Rust HashMap, which changes from process to process: the same weights made files with other bytes, so
    other digests (series/meta.json then called the series of an unchanged V stale: a resumed run re-encoded
    them, and its artifacts were not those of an uninterrupted run). Sorting keeps the header's length."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" not in header:
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    return data[:8] + text.ljust(n) + data[8 + n:] if len(text) <= n else data


def load_model(cls, config_cls, directory: Path, name: str, env: str | None = None, device="cpu"):
    """Build cls(config_cls(**json config)) and load its weights, with errors a user can act on. Chapter 3."""
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
        model = cls(config)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # a value of the wrong type or size
        raise WMError(f"{cpath} has an invalid config ({e}); retrain {name} or restore the file") from e
    try:
        data = wpath.read_bytes()
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as e:
        raise WMError(f"{wpath} is not a readable safetensors file ({e}); it is truncated or corrupt: "
                      f"delete it and retrain {name}") from e
    expected = model.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        bad = [k for k in expected if k not in tensors or tensors[k].shape != expected[k].shape]
        raise WMError(f"{wpath} does not match its config {cpath} (tensors {bad[:3]} are missing or of "
                      "another shape); the two files come from different runs: retrain or restore both")
    if "weights_sha256" in meta and meta["weights_sha256"] != _sha256(data):  # files from before it lack it
        raise WMError(f"{cpath} and {wpath} come from different saves (a save was interrupted between renaming"
                      f" the two, or one was copied from elsewhere): rerun the command that trained {name}, "
                      "which writes both again, or restore both files together")
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise WMError(f"{wpath} contains NaN or infinite weights in {k}; training diverged: retrain "
                          f"{name} (a lower learning rate helps)")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return model.to(device).eval(), meta


_STAGE_OF = {"vae": "train-vae", "mdnrnn": "train-mdnrnn", "controller": "train-controller"}


def file_digest(path: Path) -> str:
    """A short sha256 of a file's bytes: names the V that encoded a series, or the weights a cache belongs to."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def pick_device(device: str | None = None) -> torch.device:
    """The torch device V and M train and dream on: the one asked for, else the GPU when there is one."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


WEIGHT_FILES = ("vae.safetensors", "vae.json", "mdnrnn.safetensors", "mdnrnn.json", "initial_z.npz")


def link_shared(weights: Path, folder: Path, names=WEIGHT_FILES) -> None:
    """Hard-link (or copy) trained V and M files into folder, which then works as a weights directory of its
    own (a controller of the tau sweep or of the ablation is trained and scored there)."""
    weights, folder = Path(weights), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        src, dst = weights / name, folder / name
        if not src.exists():
            raise WMError(f"{src} is missing: pass a run or weights directory with trained V and M "
                          f"({', '.join(names)})")
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
