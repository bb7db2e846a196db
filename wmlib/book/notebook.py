"""Small helpers shared by the book's chapters: set-up, glue, videos, the chapters' run and V.

Every chapter starts with::

    from wmlib.book import setup
    PROFILE, DEVICE = setup()

The profile (smoke, default, gpu or paper; see wmlib.run.profiles) comes from the WMLIB_PROFILE environment
variable, so the same notebook runs in seconds in CI and at full size on a reader's machine.
"""
import contextlib
import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch

from ..run.pipeline import timed
from ..run.profiles import PROFILES, get_config
from ..vae import frames_to_tensor, tensor_to_frames


def _profile_from_env() -> str:
    profile = os.environ.get("WMLIB_PROFILE", "default")
    if profile not in PROFILES:
        raise ValueError(f"WMLIB_PROFILE={profile!r} is not a wmlib profile; set it to one of "
                         f"{', '.join(PROFILES)} (or leave it unset for 'default')")
    return profile


PROFILE = _profile_from_env()


def device() -> str:
    """The torch device the chapters train on: "cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def on_colab() -> bool:
    """True when running inside Google Colab. Chapter 1."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def setup() -> tuple[str, str]:
    """Print and return (profile, device) for the chapter about to run.

    The profile is WMLIB_PROFILE; unset, it is "gpu" when a GPU is visible (a reader's own training sized
    for a Colab-class GPU) and "default" otherwise. It is read again here, so setting
    os.environ["WMLIB_PROFILE"] and rerunning the first cell switches the profile without restarting the
    kernel.

    Introduced in chapter 1.
    """
    global PROFILE
    dev = device()
    picked = "WMLIB_PROFILE" not in os.environ
    PROFILE = "gpu" if picked and dev == "cuda" else _profile_from_env()
    where = "Colab" if on_colab() else "local"
    if PROFILE == "smoke" and dev == "cpu":
        # Smoke models are tiny: one thread is as fast, and on a busy CPU several threads that wait for
        # each other are many times slower (a CI chapter went from 38 s to 171 s with two).
        torch.set_num_threads(1)
    print(f"wmlib profile: {PROFILE}{' (WMLIB_PROFILE is unset)' if picked else ''}   device: {dev}   "
          f"({where}, torch {torch.__version__}, {torch.get_num_threads()} CPU "
          f"thread{'s' if torch.get_num_threads() > 1 else ''})")
    return PROFILE, dev


def glue(name: str, value, display: bool = True):
    """myst-nb's `glue` (a computed value the book's text quotes as {glue:text}`name`), usable anywhere.

    numpy and torch scalars become plain Python numbers first (myst-nb cannot format them in the
    text). Where myst-nb is not installed (Colab: there is no book to build there) it does nothing; the
    cells print their numbers anyway. Returns None, so that a cell ending in glue() prints no stray value.

    Introduced in chapter 2.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=display)


def quote(name: str, value):
    """Glue a value that the book's text quotes, without displaying it (the cells print their own numbers).

    Anything with .item() (a numpy or torch scalar, a 0-d tensor, a one-element array) becomes a plain
    Python number first. Returns None, like glue.

    Introduced in chapter 2.
    """
    if hasattr(value, "item"):
        value = value.item()
    glue(name, value, display=False)


def show_frames(frames, ncols: int = 8, scale: float = 1.5, titles=None):
    """Show uint8 frames (N, 64, 64, 3) in a grid of `ncols` columns.

    `scale` is the size of one frame in inches; `titles` (optional) labels each frame.

    Introduced in chapter 1.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"show_frames expects uint8 frames of shape (N, H, W, 3), got {frames.dtype} "
                         f"{frames.shape}")
    n = len(frames)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(frames[i], interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    fig.tight_layout()
    plt.show()


MAX_VIDEO_BYTES = 2_000_000  # one embedded video; keeps an executed chapter small


def video_bytes(frames, fps: int = 25, scale: int = 4, max_bytes: int = MAX_VIDEO_BYTES) -> bytes:
    """Encode uint8 frames (T, H, W, 3) as an H.264 mp4, upscaled `scale` x by nearest neighbour.

    The encoder is imageio-ffmpeg's bundled ffmpeg (no system ffmpeg needed). yuv420p and even frame
    sizes make the file play in every browser. Raises ValueError when the result exceeds max_bytes
    (show fewer frames or a smaller scale).

    Introduced in chapter 3.
    """
    import numpy as np
    import imageio_ffmpeg

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"video expects uint8 frames of shape (T, H, W, 3) with T >= 1, got {frames.dtype} "
                         f"{frames.shape}")
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    big = frames.repeat(int(scale), axis=1).repeat(int(scale), axis=2)
    h, w = big.shape[1] - big.shape[1] % 2, big.shape[2] - big.shape[2] % 2
    big = np.ascontiguousarray(big[:, :h, :w])
    import tempfile
    import os
    fd, path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(path, (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=1, output_params=["-movflags", "+faststart"],
                                             ffmpeg_log_level="error")
        writer.send(None)
        for f in big:
            writer.send(f)
        writer.close()
        with open(path, "rb") as fh:
            data = fh.read()
    finally:
        os.unlink(path)
    if len(data) > max_bytes:
        raise ValueError(f"the video is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB cap; show fewer "
                         "frames, a lower fps or a smaller scale")
    return data


def video(frames, fps: int = 25, scale: int = 4, max_bytes: int = MAX_VIDEO_BYTES, caption: str | None = None):
    """An inline, looping mp4 of uint8 frames (T, H, W, 3) that plays in Jupyter, Colab and the built book.

    The video is embedded as base64 in the cell's output (no file next to the notebook), so the same
    call works everywhere; `max_bytes` caps its size.

    Introduced in chapter 3.
    """
    import base64
    from IPython.display import HTML

    data = base64.b64encode(video_bytes(frames, fps, scale, max_bytes)).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return HTML(f'<figure class="wmlib-video"><video controls autoplay loop muted playsinline '
                f'src="data:video/mp4;base64,{data}"></video>{cap}</figure>')


def repo_root() -> Path:
    """The folder that holds runs/ and pretrained/: the repository when a chapter runs from its book/ folder
    (the parent holds wmlib/), else the current folder (e.g. /content on Colab).

    Introduced in chapter 3.
    """
    here = Path.cwd()
    return here.parent if (here.parent / "wmlib").is_dir() else here


def shown_path(path: Path, root: Path | None = None) -> str:
    """`path` as a chapter prints it: relative to the repository root (`root`, by default repo_root()) when
    inside it, so that no building machine's folders appear in a chapter's output; else as it is (a folder
    the reader named).

    Introduced in chapter 7.
    """
    try:
        return str(Path(path).resolve().relative_to(Path(root or repo_root()).resolve()))
    except ValueError:
        return str(path)


def shipped_weights(env: str) -> Path:
    """The folder of the shipped, properly trained V, M and C of `env` (pretrained/ENV, with model_card.json):
    the exhibits the chapters show. WMLIB_CARRACING_WEIGHTS or WMLIB_DOOM_WEIGHTS points elsewhere.

    pretrained/ENV is looked for under repo_root() (a chapter run from book/ in a clone), then beside the
    imported wmlib (the clone that a chapter's set-up cell brings on Colab, or any editable install).
    Raises WMError naming the fix when none holds them: never a silent stand-in.

    Introduced in chapter 3.
    """
    from ..envs import check_env_name
    from ..errors import WMError

    check_env_name(env)
    var = f"WMLIB_{env.upper()}_WEIGHTS"
    files = ("vae.safetensors", "mdnrnn.safetensors", "controller.safetensors", "model_card.json")
    if os.environ.get(var):
        places = [Path(os.environ[var])]
    else:
        places = [repo_root() / "pretrained" / env, Path(__file__).resolve().parents[2] / "pretrained" / env]
    for folder in places:
        if all((folder / f).exists() for f in files):
            return folder
    looked = "; ".join(f"{p} lacks {', '.join(f for f in files if not (p / f).exists())}" for p in dict.fromkeys(places))
    raise WMError(f"the shipped {env} weights were not found ({looked}). Run the chapter's first cell (on Colab "
                  f"it brings the repository with its weights), run the chapter from book/ in a clone of the "
                  f"repository, or set {var} to a folder that holds them")


def book_run_config(env: str, profile: str, seed: int = 0, *, name: str | None = None):
    """(RunConfig, run directory) of the run the book's chapters train for `env` on `profile` (chapter 3).

    The configuration is get_config(env, profile, seed), the same as `python -m wmlib run --profile PROFILE`.
    The run directory is runs/book-NAME-PROFILE-DIGEST under repo_root() (NAME: `env` unless given). Every
    chapter passes the result to open_run and the stage_* functions, which skip finished work: a chapter
    opened second reuses what the first one trained, and one opened first trains it.
    """
    cfg = get_config(env, profile, seed)
    # The folder's name ends with a digest of the whole configuration: edit a size in wmlib.run.profiles and
    # the chapters train a new run instead of silently reusing one of other sizes.
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return cfg, repo_root() / "runs" / f"book-{name or env}-{profile}-{digest}"


class _BookLog(io.TextIOBase):
    """Where run_stage sends a stage's log: the cell's output, without the clock time that starts each line
    of the command line's log and with paths relative to the repository (the book shows neither: both
    change with the machine and the day)."""
    CLOCK = re.compile(r"^\d\d:\d\d:\d\d ", re.M)

    def __init__(self, out):
        self.out, self.root = out, str(repo_root()) + os.sep

    def write(self, text):
        self.out.write(self.CLOCK.sub("", text).replace(self.root, ""))
        return len(text)

    def flush(self):
        self.out.flush()


def run_stage(name: str, stage, cfg, run_dir: Path, **kwargs):
    """Run a pipeline stage the chapter's way (chapter 3): its log on stdout (no clock times, paths relative
    to the repository), no progress bars, its wall time added to run_dir/timings.json under `name`.
    Returns what the stage returns."""
    log = _BookLog(sys.stdout)
    with timed(run_dir, name), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return stage(cfg, run_dir, progress=False, **kwargs)


@torch.no_grad()
def encode(vae, frames, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """V's code of uint8 frames (N, 64, 64, 3) (chapter 3): mu and logvar, each (N, z), on V's device.

    The frames go through V `batch` at a time, so a long episode does not need memory for all at once."""
    device = next(vae.parameters()).device
    parts = [vae.encode(frames_to_tensor(frames[k:k + batch], device)) for k in range(0, len(frames), batch)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def decode(vae, z, batch: int = 500) -> np.ndarray:
    """V's drawing of codes z (N, z) (a tensor or an array) as uint8 frames (N, 64, 64, 3) (chapter 3)."""
    device = next(vae.parameters()).device
    z = z.detach().float().cpu() if torch.is_tensor(z) else torch.as_tensor(np.asarray(z), dtype=torch.float32)
    return np.concatenate([tensor_to_frames(vae.decode(z[k:k + batch].to(device))) for k in range(0, len(z), batch)])
