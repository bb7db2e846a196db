"""Encoding episodes into (mu, logvar) series: threaded loading keeps order, results and errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from wmlib.checkpoint import save_model
from wmlib.episodes import load_episode
from wmlib.series import encode_series
from wmlib.episodes import prefetched
from wmlib.vae import ConvVAE, VAEConfig

from .helpers import ROOT, write_synthetic_episodes


@pytest.mark.parametrize("ahead", [0, 1, 3, 20])
def test_prefetched_keeps_the_order(ahead):
    assert list(prefetched(lambda x: x * x, range(10), ahead)) == [x * x for x in range(10)]


def test_prefetched_raises_at_the_failing_item():
    def fn(x):
        if x == 4:
            raise ValueError("item 4")
        return x

    got = []
    with pytest.raises(ValueError, match="item 4"):
        for x in prefetched(fn, range(10), 3):
            got.append(x)
    assert got == [0, 1, 2, 3]


def test_threaded_encoding_writes_the_same_series(tmp_path):
    write_synthetic_episodes(tmp_path / "eps", 5, 30, action_size=1)
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(z_size=8)).eval()
    save_model(vae, tmp_path, "vae", "doom")
    for loaders in (1, 4):
        encode_series(vae, tmp_path / "vae.safetensors", tmp_path / "eps", tmp_path / f"s{loaders}",
                      progress=False, loaders=loaders)
    for i in range(5):
        one = load_episode(tmp_path / "s1" / f"ep_{i:06d}.npz", keys=("mu", "logvar", "action", "done"))
        four = load_episode(tmp_path / "s4" / f"ep_{i:06d}.npz", keys=("mu", "logvar", "action", "done"))
        for k in one:
            np.testing.assert_array_equal(one[k], four[k])


def test_import_needs_neither_pygame_nor_box2d():
    """FastCarRacing is registered by name: a Doom-only machine (or a GPU box without them) imports wmlib."""
    code = ("import sys; sys.modules['pygame'] = None; sys.modules['Box2D'] = None\n"
            "import gymnasium, wmlib, wmlib.dream, wmlib.run.pipeline\n"
            "assert 'wmlib/FastCarRacing-v3' in gymnasium.envs.registry\n"
            "assert 'wmlib.fast_carracing' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
