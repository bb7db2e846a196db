"""Small helpers shared by the book's chapters.

Every chapter starts with::

    from wmlib.notebook import setup
    PROFILE, DEVICE = setup()

The profile (smoke, default or paper; see wmlib.profiles) comes from the WMLIB_PROFILE environment
variable, so the same notebook runs in seconds in CI and at full size on a reader's machine.
"""
import os

import torch

from .profiles import PROFILES


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
    print(f"wmlib profile: {PROFILE}   device: {dev}   ({where}, torch {torch.__version__})")
    return PROFILE, dev


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
