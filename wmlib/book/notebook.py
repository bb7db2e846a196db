"""Small helpers shared by the book's chapters.

Every chapter starts with::

    from wmlib.book import setup
    PROFILE, DEVICE = setup()

The profile (smoke, default or paper; see wmlib.run.profiles) comes from the WMLIB_PROFILE environment
variable, so the same notebook runs in seconds in CI and at full size on a reader's machine.
"""
import os

import torch

from ..run.profiles import PROFILES


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
    """True when running inside Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def setup() -> tuple[str, str]:
    """Print and return (profile, device) for the chapter about to run.

    WMLIB_PROFILE is read again here, so setting os.environ["WMLIB_PROFILE"] and rerunning the
    first cell switches the profile without restarting the kernel.
    """
    global PROFILE
    PROFILE = _profile_from_env()
    dev = device()
    where = "Colab" if on_colab() else "local"
    if PROFILE == "smoke" and dev == "cpu":
        # Smoke models are tiny: one thread is as fast, and on a busy CPU several threads that wait for
        # each other are many times slower (a CI chapter went from 38 s to 171 s with two).
        torch.set_num_threads(1)
    print(f"wmlib profile: {PROFILE}   device: {dev}   ({where}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU thread{'s' if torch.get_num_threads() > 1 else ''})")
    return PROFILE, dev


def glue(name: str, value, display: bool = True):
    """myst-nb's `glue` (a computed value the book's text quotes as {glue:text}`name`), usable anywhere.

    numpy and torch scalars become plain Python numbers first (myst-nb cannot format them in the
    text). Where myst-nb is not installed (Colab: there is no book to build there) it only returns
    the value; the cells print their numbers anyway.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, value, display=display)
    return value


def quote(name: str, value):
    """Glue a value that the book's text quotes, without displaying it (the cells print their own numbers).

    Anything with .item() (a numpy or torch scalar, a 0-d tensor, a one-element array) becomes a plain
    Python number first; returns the value glued.
    """
    if hasattr(value, "item"):
        value = value.item()
    return glue(name, value, display=False)


def show_frames(frames, ncols: int = 8, scale: float = 1.5, titles=None):
    """Show uint8 frames (N, 64, 64, 3) in a grid of `ncols` columns.

    `scale` is the size of one frame in inches; `titles` (optional) labels each frame.
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
    """
    import base64
    from IPython.display import HTML

    data = base64.b64encode(video_bytes(frames, fps, scale, max_bytes)).decode("ascii")
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return HTML(f'<figure class="wmlib-video"><video controls autoplay loop muted playsinline '
                f'src="data:video/mp4;base64,{data}"></video>{cap}</figure>')


# The sizes of the run the book's chapters share per env and profile: (section, field) -> value, applied
# to the smoke configuration ("paper" takes get_config(env, "paper") unchanged). "default" must keep a
# chapter within a few minutes on a 2-core CPU, so it is far smaller than the CLI's default profile.
BOOK_SIZES = {
    "carracing": {
        # smoke collects in the notebook's own process: a worker pool's start-up would dominate 240 steps
        "smoke": {("collect", "workers"): 1, ("vae_train", "block_episodes"): 1,
                  # C (chapter 7): CMA-ES in the real game, 80 env steps per generation
                  ("cmaes", "popsize"): 4, ("cmaes", "rollouts"): 1, ("cmaes", "generations"): 2,
                  ("cmaes", "max_steps"): 20, ("cmaes", "workers"): 2, ("cmaes", "eval_every"): 0,
                  ("cmaes", "eval_episodes"): 2},
        "default": {
            ("collect", "episodes"): 32, ("collect", "max_steps"): 300, ("collect", "workers"): 2,
            ("vae_train", "epochs"): 2, ("vae_train", "batch_size"): 100, ("vae_train", "lr"): 1e-3,
            ("vae_train", "block_episodes"): 4,
            ("mdnrnn_train", "steps"): 600, ("mdnrnn_train", "batch_size"): 16, ("mdnrnn_train", "seq_len"): 100,
            # C (chapter 7): 8 candidates x 1 track x 4 generations of 200 steps, under a minute of rollouts
            # (the default book build, all ten chapters, must stay under 20 minutes on a 2-core CPU)
            ("cmaes", "popsize"): 8, ("cmaes", "rollouts"): 1, ("cmaes", "generations"): 4,
            ("cmaes", "max_steps"): 200, ("cmaes", "workers"): 2, ("cmaes", "eval_every"): 0,
            ("cmaes", "eval_episodes"): 4,
        },
    },
}


def book_run_config(env: str, profile: str, seed: int = 0):
    """(RunConfig, run directory) shared by the book's chapters that train `env` on `profile`.

    "smoke" and "default" start from get_config(env, "smoke") and set the sizes in BOOK_SIZES;
    "paper" is get_config(env, "paper"). The run directory is runs/book-ENV-PROFILE-DIGEST under the
    repository root (the parent of the notebook's folder when that holds wmlib/, else the current
    folder, e.g. /content on Colab). Every chapter passes the result to wmlib.run.pipeline.open_run and
    the stage_* functions, which skip finished work: a chapter opened second reuses what the first
    one trained, and one opened first trains it.
    """
    import dataclasses
    from pathlib import Path

    from ..run.profiles import get_config

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    if profile == "paper":
        cfg = get_config(env, "paper", seed)
    else:
        if env not in BOOK_SIZES or profile not in BOOK_SIZES[env]:
            raise ValueError(f"the book has no {profile!r} sizes for env {env!r}; add them to "
                             "wmlib.book.notebook.BOOK_SIZES")
        cfg = get_config(env, "smoke", seed)
        cfg.profile = profile
        for (section, name), value in BOOK_SIZES[env][profile].items():
            setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{name: value}))
    # The folder's name ends with a digest of the whole configuration: edit BOOK_SIZES (or a default in
    # wmlib.run.profiles) and the chapters train a new run instead of silently reusing one of other sizes.
    import hashlib
    import json
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    here = Path.cwd()
    root = here.parent if (here.parent / "wmlib").is_dir() else here
    return cfg, root / "runs" / f"book-{env}-{profile}-{digest}"
