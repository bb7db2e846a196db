"""The episode file format, and reading episodes back: whole, or as shuffled blocks of frames for V.

One compressed file per episode, `ep_XXXXXX.npz` (numpy, no pickles), written atomically: obs uint8
(T, 64, 64, 3), action float32 (T, A) in controller space, reward float32 (T,), done bool (T,) (true
only on the last step of an episode the game ended, not one the time limit cut), plus the scalars
seed and policy. M's (mu, logvar) series (series.py) use the same naming and reader.

Streaming for V (introduced in chapter 3): paper-scale CarRacing data is 10M frames (123 GB as
uint8) and cannot sit in memory. Each epoch the episode files are shuffled and cut into blocks of
`block_episodes`; a block is decompressed, its frames shuffled and served as batches, while a
thread decompresses the next block (zlib releases the GIL). Memory holds two blocks, whatever the
data size. The order depends only on (seed, epoch, block), so training resumes at any block boundary
and replays the same stream.
"""
import collections
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .checkpoint import save_npz
from .errors import WMError

EPISODE_GLOB = "ep_*.npz"


def episode_path(directory: Path, index: int) -> Path:
    return Path(directory) / f"ep_{index:06d}.npz"


def save_episode(path: Path, episode: dict) -> None:
    """Write one episode (the arrays above) atomically."""
    save_npz(path, **episode)


def list_episodes(directory: Path, what: str = "episode") -> list[Path]:
    """The episode (or series) files of a folder, in order; a clear error if there are none. Chapter 3."""
    directory = Path(directory)
    files = sorted(directory.glob(EPISODE_GLOB)) if directory.is_dir() else []
    if not files:
        raise WMError(f"no {what} files (ep_*.npz) in {directory}; run `python -m wmlib collect` first, or "
                      "pass the run directory that holds them")
    return files


def load_episode(path: Path, keys=("obs", "action", "reward", "done")) -> dict:
    """Load an episode file, turning every kind of damage into an error that says what to do. Chapter 3."""
    try:
        with np.load(path, allow_pickle=False) as f:
            ep = {k: f[k] for k in keys}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise WMError(f"episode file {path} is corrupt or incomplete ({type(e).__name__}: {e}). Delete it and "
                      "rerun the same `python -m wmlib collect` command: it re-creates exactly the missing "
                      "episodes") from e
    if "obs" in ep and (ep["obs"].dtype != np.uint8 or ep["obs"].ndim != 4 or ep["obs"].shape[1:] != (64, 64, 3)):
        raise WMError(f"episode file {path} holds frames of shape {ep['obs'].shape} {ep['obs'].dtype}, expected "
                      "uint8 (T, 64, 64, 3); it was not written by wmlib collect: remove it")
    # Cheap checks that stop damage here rather than as a broadcast error or a silently NaN loss in training.
    lengths = {k: len(a) if a.ndim else None for k, a in ep.items()}
    if len(set(lengths.values())) > 1 or not all(lengths.values()):
        raise WMError(f"{path} holds arrays of lengths {lengths}, but every array of an episode needs the same "
                      "number (>= 1) of steps; the file is damaged or not wmlib's: delete it and rerun the command "
                      "that wrote it (it re-creates exactly the missing files)")
    bad = [k for k, a in ep.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise WMError(f"{path} holds NaN or infinite values in {', '.join(bad)}; delete it and rerun the command "
                      "that wrote it (it re-creates exactly the missing files)")
    return ep


def clean_partial_files(directory: Path) -> int:
    """Remove temporary files (and folders: series/.packed.tmp) a killed writer left behind."""
    n = 0
    for p in Path(directory).glob(".*.tmp"):
        if p.is_dir():  # unlink() would raise IsADirectoryError and stop the rerun that should clean up
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n


def prefetched(fn, items, ahead: int):
    """fn(item) for each item, in order, with the next `ahead` items loading on threads meanwhile.

    Loading an episode is mostly zlib inflating its frames, which releases the GIL: threads keep V fed
    (two loaders read Doom episodes 1.75x as fast as one on a 2-core CPU). Memory holds the item being
    used and at most `ahead` more; ahead=0 loads each item when it is needed.
    """
    items = list(items)
    if ahead < 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        pending = collections.deque(pool.submit(fn, x) for x in items[:ahead])
        for x in items[ahead:]:
            result = pending.popleft().result()
            pending.append(pool.submit(fn, x))
            yield result
        while pending:
            yield pending.popleft().result()


def epoch_blocks(files: list[Path], block_episodes: int, seed: int, epoch: int) -> list[list[Path]]:
    order = np.random.default_rng([seed, epoch]).permutation(len(files))
    return [[files[i] for i in order[k:k + block_episodes]] for k in range(0, len(files), block_episodes)]


def load_block(files: list[Path], seed: int, epoch: int, block: int) -> np.ndarray:
    """Frames of the block's episodes, shuffled: uint8 (N, 64, 64, 3)."""
    frames = np.concatenate([load_episode(f, keys=("obs",))["obs"] for f in files])
    return frames[np.random.default_rng([seed, epoch, block, 1]).permutation(len(frames))]


def iterate_blocks(files: list[Path], block_episodes: int, seed: int, epoch: int, start_block: int = 0):
    """Yield (block index, shuffled frames) for one epoch from start_block on, loading one block ahead."""
    blocks = epoch_blocks(files, block_episodes, seed, epoch)[start_block:]
    loads = prefetched(lambda b: load_block(blocks[b - start_block], seed, epoch, b),
                       range(start_block, start_block + len(blocks)), ahead=1)
    yield from zip(range(start_block, start_block + len(blocks)), loads)
