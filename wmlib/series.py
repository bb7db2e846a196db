"""Encode every frame once with V into (mu, logvar) series, then pack them for M's training.

Per-episode series files (series/ep_XXXXXX.npz) make encoding resumable; `pack_series` then writes
one .npy file per array (mu, logvar, action, done, plus episode offsets), which M's training reads
as memory maps: random windows without loading the whole data set. series/meta.json records which
V made the series; series from another V are thrown away and encoded again. The first frame of each
episode is stored apart (initial_z.npz) for the dream's reset.
"""
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import DISK_FULL_ERRNOS, disk_full_error, file_digest, read_json, save_npz, write_json
from .episodes import clean_partial_files, list_episodes, load_episode, prefetched
from .errors import WMError
from .vae import ConvVAE, frames_to_tensor

PACKED = ("mu", "logvar", "action", "done", "starts", "lengths")


@torch.no_grad()
def encode_series(vae: ConvVAE, vae_file: Path, episodes_dir: Path, series_dir: Path, batch_size: int = 1000,
                  progress: bool = True, loaders: int | None = None) -> None:
    series_dir = Path(series_dir)
    digest = file_digest(vae_file)
    meta_path = series_dir / "meta.json"
    if meta_path.exists() and read_json(meta_path).get("vae") != digest:
        shutil.rmtree(series_dir)  # made by another V: stale
    series_dir.mkdir(parents=True, exist_ok=True)
    clean_partial_files(series_dir)
    write_json(meta_path, {"vae": digest})
    dev = next(vae.parameters()).device
    todo = [f for f in list_episodes(episodes_dir) if not (series_dir / f.name).exists()]
    loaders = min(8, os.cpu_count() or 1) if loaders is None else loaders
    episodes = prefetched(load_episode, todo, loaders)
    with ThreadPoolExecutor(max_workers=max(1, loaders)) as savers:  # compressing the series is zlib too
        saved = []
        for f, ep in tqdm(zip(todo, episodes), total=len(todo), desc="encode series", disable=not progress,
                          leave=False):
            mus, logvars = [], []
            for k in range(0, len(ep["obs"]), batch_size):
                mu, logvar = vae.encode(frames_to_tensor(ep["obs"][k:k + batch_size], dev))
                mus.append(mu.cpu().numpy())
                logvars.append(logvar.cpu().numpy())
            saved.append(savers.submit(save_npz, series_dir / f.name, mu=np.concatenate(mus),
                                       logvar=np.concatenate(logvars), action=ep["action"], done=ep["done"]))
        for s in saved:
            s.result()  # a full disk raises here, as it did when the series were written one by one


def pack_series(series_dir: Path) -> Path:
    """Concatenate the per-episode series into series/packed/*.npy (memory-mappable)."""
    series_dir = Path(series_dir)
    files = list_episodes(series_dir, what="series")
    packed = series_dir / "packed"
    meta = read_json(series_dir / "meta.json")
    if (packed / "meta.json").exists() and read_json(packed / "meta.json") == {**meta, "episodes": len(files)}:
        return packed
    lengths = np.asarray([len(load_episode(f, keys=("done",))["done"]) for f in files], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    tmp = series_dir / ".packed.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        first_mu, first_logvar = _write_packed(tmp, files, starts, lengths, {**meta, "episodes": len(files)})
    except BaseException as e:  # a full disk, a damaged series file, Ctrl-C: no half-packed folder is left
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(packed, e) from e
        raise
    # initial_z.npz before packed/: a complete packed/ is what makes a rerun skip packing, so a kill between
    # the two must not leave a packed/ without its initial_z.npz
    save_npz(series_dir.parent / "initial_z.npz", mu=first_mu, logvar=first_logvar)
    shutil.rmtree(packed, ignore_errors=True)
    tmp.rename(packed)
    return packed


def _write_packed(tmp: Path, files, starts, lengths, meta: dict):
    """Write the packed arrays into tmp; returns the first frames' (mu, logvar)."""
    arrays = None
    first_mu, first_logvar = [], []
    for f, s, n in zip(files, starts, lengths):
        ep = load_episode(f, keys=("mu", "logvar", "action", "done"))
        if arrays is None:
            arrays = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=ep[k].dtype,
                                                   shape=(int(lengths.sum()),) + ep[k].shape[1:])
                      for k in ("mu", "logvar", "action", "done")}
        for k in arrays:
            arrays[k][s:s + n] = ep[k]
        first_mu.append(ep["mu"][0])
        first_logvar.append(ep["logvar"][0])
    for a in arrays.values():
        a.flush()
    del arrays
    np.save(tmp / "starts.npy", starts)
    np.save(tmp / "lengths.npy", lengths)
    write_json(tmp / "meta.json", meta)
    return np.stack(first_mu), np.stack(first_logvar)


def load_packed(packed: Path) -> dict:
    """The packed series as memory maps, plus flags of each episode's first and last frame. Chapter 5."""
    packed = Path(packed)
    try:
        data = {k: np.load(packed / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in PACKED}
    except (OSError, ValueError) as e:
        raise WMError(f"the packed series in {packed} are missing or damaged ({e}); delete {packed} and rerun "
                      "`python -m wmlib train-mdnrnn` to pack them again") from e
    starts, lengths = np.asarray(data["starts"]), np.asarray(data["lengths"])
    total = int(lengths.sum())
    if len(data["mu"]) != total:
        raise WMError(f"the packed series in {packed} are inconsistent ({len(data['mu'])} frames, episodes "
                      f"say {total}); delete {packed} and rerun `python -m wmlib train-mdnrnn`")
    # flags of frames that open / close an episode (one extra slot keeps padded indices in range)
    data["is_first"] = np.zeros(total + 1, bool)
    data["is_first"][starts] = True
    data["is_last"] = np.zeros(total + 1, bool)
    data["is_last"][starts + lengths - 1] = True
    data["starts"], data["lengths"] = starts, lengths
    return data
