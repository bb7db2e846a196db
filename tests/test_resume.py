"""kill -9 in the middle of each long stage, rerun the same command, and get what an uninterrupted
run gets: the same episode files, the same trained weights, the same CMA-ES result."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wmlib.checkpoint import load_torch_state, save_npz, write_json
from wmlib.collect import load_episode

from .helpers import ROOT, kill_group_when, start, wmlib_cli, write_synthetic_episodes


def same_tensors(a: Path, b: Path) -> bool:
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_collection_resumes_without_duplicates_or_gaps(tmp_path):
    killed, full = tmp_path / "killed", tmp_path / "full"
    args = ["collect", "--env", "doom", "--profile", "smoke", "--episodes", "8", "--workers", "2", "--no-progress"]
    proc = start([sys.executable, "-m", "wmlib", *args, "--run-dir", str(killed)])
    assert kill_group_when(proc, lambda: len(list((killed / "episodes").glob("ep_*.npz"))) >= 2)
    n_before = len(list((killed / "episodes").glob("ep_*.npz")))
    assert n_before < 8, "the collection finished before it could be killed"
    wmlib_cli(*args, "--run-dir", killed, check=True)
    wmlib_cli(*args, "--run-dir", full, check=True)
    files = sorted(p.name for p in (killed / "episodes").iterdir())
    assert files == [f"ep_{i:06d}.npz" for i in range(8)]  # no temp files, no gaps, no extras
    for name in files:
        a, b = load_episode(killed / "episodes" / name), load_episode(full / "episodes" / name)
        for k in a:
            assert np.array_equal(a[k], b[k]), f"{name}:{k} differs from the uninterrupted collection"


def _job(stage, data, out):
    return [sys.executable, str(ROOT / "tests" / "resume_job.py"), stage, str(data), str(out)]


def _run_killed_and_full(tmp_path, stage, data, state_name, name):
    import subprocess
    killed, full = tmp_path / "killed", tmp_path / "full"

    def mid_training():
        p = killed / state_name
        if not p.exists():
            return False
        try:
            s = load_torch_state(p)
        except Exception:
            return False
        return s["step"] >= 2 and not s["done"]

    proc = start(_job(stage, data, killed))
    assert kill_group_when(proc, mid_training), "training finished before it could be killed"
    assert not (killed / f"{name}.safetensors").exists()
    subprocess.run(_job(stage, data, killed), check=True, cwd=ROOT)
    subprocess.run(_job(stage, data, full), check=True, cwd=ROOT)
    assert same_tensors(killed / f"{name}.safetensors", full / f"{name}.safetensors"), \
        "resumed training ended with other weights than the uninterrupted run"


def test_vae_training_resumes_exactly(tmp_path):
    data = tmp_path / "episodes"
    write_synthetic_episodes(data, episodes=6, length=48, action_size=1)
    _run_killed_and_full(tmp_path, "vae", data, "vae.train.pt", "vae")


def test_mdnrnn_training_resumes_exactly(tmp_path):
    series = tmp_path / "series"
    rng = np.random.default_rng(0)
    for i in range(5):
        n = int(rng.integers(15, 40))
        done = np.zeros(n, bool)
        done[-1] = True
        save_npz(series / f"ep_{i:06d}.npz", mu=rng.normal(size=(n, 8)).astype(np.float32),
                 logvar=np.full((n, 8), -2, np.float32), action=rng.uniform(-1, 1, (n, 1)).astype(np.float32),
                 done=done)
    write_json(series / "meta.json", {"vae": "synthetic"})
    _run_killed_and_full(tmp_path, "mdnrnn", series, "mdnrnn.train.pt", "mdnrnn")


@pytest.mark.slow
def test_cmaes_resumes_exactly(tmp_path):
    killed, full = tmp_path / "killed", tmp_path / "full"
    base = ["--env", "doom", "--profile", "smoke", "--workers", "2", "--no-progress"]
    # V and M once, shared by both CMA-ES runs
    wmlib_cli("collect", *base, "--run-dir", killed, check=True)
    wmlib_cli("train-vae", *base, "--run-dir", killed, check=True)
    wmlib_cli("train-mdnrnn", *base, "--run-dir", killed, check=True)
    import shutil
    shutil.copytree(killed, full)
    cmd = [sys.executable, "-m", "wmlib", "train-controller", *base, "--generations", "5"]

    def after_two_generations():
        p = killed / "cmaes" / "state.npz"
        try:
            with np.load(p) as f:
                return len(f["fitness"]) >= 2
        except Exception:
            return False

    proc = start(cmd + ["--run-dir", str(killed)])
    assert kill_group_when(proc, after_two_generations)
    with np.load(killed / "cmaes" / "state.npz") as f:
        assert len(f["fitness"]) < 5, "CMA-ES finished before it could be killed"
    wmlib_cli(*cmd[3:], "--run-dir", killed, check=True)
    wmlib_cli(*cmd[3:], "--run-dir", full, check=True)
    with np.load(killed / "cmaes" / "state.npz") as a, np.load(full / "cmaes" / "state.npz") as b:
        assert a["fitness"].shape == (5, 4)
        assert np.array_equal(a["fitness"], b["fitness"]) and np.array_equal(a["checksum"], b["checksum"])
    assert same_tensors(killed / "controller.safetensors", full / "controller.safetensors")
