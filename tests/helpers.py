"""Shared test helpers: synthetic episodes, running the CLI, killing a job mid-way."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from wmlib.checkpoint import save_npz

ROOT = Path(__file__).resolve().parents[1]


def write_synthetic_episodes(directory: Path, episodes: int, length: int, action_size: int = 3, seed: int = 0,
                             done_last: bool = False) -> None:
    """Smooth moving-blob frames (compressible, learnable) in the episode file format."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(episodes):
        n = int(length)
        cx = 32 + 20 * np.sin(np.linspace(0, 3, n) + rng.uniform(0, 6))
        frames = np.zeros((n, 64, 64, 3), np.uint8)
        for t in range(n):
            blob = np.exp(-((xx - cx[t]) ** 2 + (yy - 32) ** 2) / 60.0)
            frames[t, ..., 0] = (255 * blob).astype(np.uint8)
            frames[t, ..., 1] = 80
        done = np.zeros(n, bool)
        done[-1] = done_last
        save_npz(Path(directory) / f"ep_{i:06d}.npz", obs=frames,
                 action=rng.uniform(-1, 1, (n, action_size)).astype(np.float32),
                 reward=np.ones(n, np.float32), done=done, seed=np.int64(i), policy=np.str_("synthetic"))


def wmlib_cli(*args, timeout=600, check=False, env=None):
    """Run `python -m wmlib ARGS`; returns CompletedProcess (text)."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    r = subprocess.run([sys.executable, "-m", "wmlib", *map(str, args)], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"wmlib {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def wmlib_main(*args):
    """Run the command line in this process (fast: no interpreter start-up); returns CompletedProcess."""
    import contextlib
    import io

    from wmlib.run.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return subprocess.CompletedProcess(["wmlib", *map(str, args)], code, out.getvalue(), err.getvalue())


def smoke_run_args(env: str, run_dir: Path) -> list[str]:
    """`python -m wmlib` arguments of the smoke profile's whole `run` (the shared reference run of the tests)."""
    return ["run", "--env", env, "--profile", "smoke", "--run-dir", str(run_dir), "--no-progress"]


def start(cmd: list[str], log: Path | None = None) -> subprocess.Popen:
    """Start a command in its own process group, so kill_group takes its workers too.

    Its stderr goes to a pipe, or to the file `log` (which can be read while the command runs)."""
    err = subprocess.PIPE if log is None else open(log, "w")
    try:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        if log is not None:
            err.close()


def kill_group_when(proc: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """kill -9 the process group as soon as ready() is true; False if the job ended first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("job did not reach the kill point in time")


def same_tensors(a: Path, b: Path) -> bool:
    """Do two .safetensors files hold the same tensors (names, dtypes, values)?"""
    import torch
    from safetensors.torch import load_file
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
