"""kill -9 `python -m wmlib run` again and again, at random moments in every stage, restart it each time,
and get exactly what an uninterrupted run gets (issue 6).

The uninterrupted run is the smoke run that tests/test_cli.py checks (conftest.py's smoke_runs). The killed
run follows a kill plan drawn from a seeded RNG: one kill per stage (collection, V, series, M, CMA-ES), M's
in the write of one of its training states, so that a kill also lands between a temporary file and its
rename. (None in the evaluation: it writes one file at its end, and a restart there costs CI seconds.) A
kill is armed when the run's log says its stage has begun and a progress marker on disk is there (episode
and series files, V's and M's training states, CMA-ES generations), then fires after a random delay; the
log at the kill says which stage it hit. Then every file of the two run directories is compared: the same
names (no temporary or stray files), the same arrays, tensors, bytes and JSON values.
"""
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from wmlib.checkpoint import load_torch_state
from wmlib.run.profiles import get_config

from .helpers import smoke_run_args, start

ENV = "doom"
SEED = int(os.environ.get("WMLIB_KILL_SEED", "0"))  # another seed, another plan: WMLIB_KILL_SEED=7 pytest ...
CFG = get_config(ENV, "smoke")
G = CFG.cmaes.generations
STAGES = ["start", "collect", "V", "series", "M", "CMA-ES", "evaluate", "done"]
POLL_S = 0.01  # short enough to see M's training states being written

# The log lines that open each stage (pipeline.py's log_err); the last one printed names the running stage.
STAGE_LINES = [("[collect]", "collect"), ("[train-vae]", "V"), ("V trained", "series"),
               ("V already trained", "series"), ("[train-mdnrnn] encoding", "series"), ("[train-mdnrnn] LSTM", "M"),
               ("M trained", "CMA-ES"), ("M already trained", "CMA-ES"), ("[train-controller]", "CMA-ES"),
               (f"generation {G}/{G}:", "evaluate"), (f"resumed CMA-ES after generation {G}\n", "evaluate"),
               ("[evaluate]", "done")]


def stage_of(log: Path) -> str:
    text, stage, at = log.read_text(), "start", -1
    for needle, name in STAGE_LINES:
        i = text.rfind(needle)
        if i > at:
            stage, at = name, i
    return stage


def kill_plan(rng: np.random.Generator, run: Path) -> list:
    """[(stage, what, armed(), delay_s)]: the kill fires delay_s after armed() is first true in that stage."""
    ep, se = run / "episodes", run / "series"
    count = lambda d: len(list(d.glob("ep_*.npz"))) if d.is_dir() else 0
    inodes = set()

    def writing_m(k):  # a file of M being written (its temporary file there) after k of its training states
        def armed():
            try:
                inodes.add(os.stat(run / "mdnrnn.train.pt").st_ino)  # each state is a new file renamed into place
            except FileNotFoundError:
                pass
            return len(inodes) >= k and any(run.glob(".mdnrnn.*.tmp"))
        return armed

    def gens():
        try:
            with np.load(run / "cmaes" / "state.npz") as f:
                return len(f["fitness"])
        except Exception:  # not there yet
            return 0

    u = lambda hi: float(rng.uniform(0, hi))
    k = int(rng.integers(1, 3))
    n = int(rng.integers(0, 3))
    j = int(rng.integers(0, 3))
    options = {
        "collect": [("workers starting", lambda: True, u(1.0)),
                    (f"{k} episode(s) written", lambda: count(ep) >= k, u(0.1)),
                    ("an episode file being written", lambda: any(ep.glob(".ep_*.tmp")), 0.0)],
        "V": [("training its first block", lambda: True, u(1.0)),
              ("after its first block's checkpoint",
               lambda: (run / "vae.train.pt").exists() and not (run / "vae.safetensors").exists(), u(0.5))],
        "series": [(f"{n} episode(s) encoded", lambda: count(se) >= n, u(0.05))],
        "M": [(f"writing a training state after {j}", writing_m(j), 0.0)],
        "CMA-ES": [("starting", lambda: True, u(1.0)),
                   ("after generation 1", lambda: gens() >= 1, u(0.2))],
    }
    return [(stage, *choices[int(rng.integers(len(choices)))]) for stage, choices in options.items()]


def kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group had already ended
        pass
    proc.wait()


def run_and_kill(cmd, log: Path, stage: str, armed, delay: float, timeout: float = 300):
    """Start cmd, kill -9 its process group `delay` s after armed() is true in `stage` (or at once if the run
    got past that stage first); returns (stage the kill hit, seconds into the attempt)."""
    proc = start(cmd, log=log)
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:  # a restart that fails (on a file an earlier kill left corrupt), or done
            kill_group(proc)
            raise AssertionError(f"the run ended (exit code {proc.returncode}) before the kill aimed at {stage}; "
                                 f"its log:\n{log.read_text()[-3000:]}")
        now = stage_of(log)
        if now == stage and armed():
            time.sleep(delay)
            break
        if STAGES.index(now) > STAGES.index(stage):
            break  # too late for this one: the kill log shows the stage it did hit
        if time.monotonic() - t0 > timeout:
            kill_group(proc)
            raise AssertionError(f"no kill point in {timeout} s; the run's log:\n{log.read_text()[-3000:]}")
        time.sleep(POLL_S)
    finished = proc.poll() is not None
    kill_group(proc)
    return ("done" if finished else stage_of(log)), time.monotonic() - t0


# ---- comparing two run directories ---------------------------------------------------------------------

VOLATILE_FILES = {"timings.json"}  # wall seconds, summed over attempts
VOLATILE_KEYS = {"evaluation.json": {"weights"}, "cmaes/log.jsonl": {"seconds"}}  # the run dir's path; timing


def listing(run: Path) -> set:
    return {p.relative_to(run).as_posix() + ("/" if p.is_dir() else "") for p in run.rglob("*")} - VOLATILE_FILES


def assert_same(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), \
            f"{where} differs"
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, bytes):
        assert a == b, f"{where}: other bytes"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def load_artifact(path: Path, name: str):
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".safetensors":  # the same tensors, and the same bytes (files are compared by digest)
        return {"tensors": load_file(str(path)), "file": path.read_bytes()}
    if path.suffix == ".pt":
        return load_torch_state(path)
    drop = VOLATILE_KEYS.get(name, set())
    if path.suffix == ".json":
        return {k: v for k, v in json.loads(path.read_text()).items() if k not in drop}
    if path.suffix == ".jsonl":
        return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()]
    return path.read_bytes()


def test_kill_anywhere_resumes_to_the_uninterrupted_result(smoke_runs, tmp_path):
    full = smoke_runs(ENV)
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "wmlib", *smoke_run_args(ENV, killed)]
    rng = np.random.default_rng(SEED)
    kills = []
    t_start = time.monotonic()
    for i, (stage, what, armed, delay) in enumerate(kill_plan(rng, killed)):
        log = tmp_path / f"attempt{i}.log"
        hit = run_and_kill(cmd, log, stage, armed, delay)
        left = sorted(p.relative_to(killed).as_posix() for p in killed.rglob(".*.tmp"))
        kills.append((i, stage, what, delay, *hit, left))
    log = tmp_path / "final.log"
    proc = start(cmd, log=log)
    try:
        proc.wait(timeout=600)
    finally:
        kill_group(proc)  # its workers and games, if it hung or failed
    assert proc.returncode == 0, f"the last restart failed:\n{log.read_text()[-3000:]}"

    report = "\n".join(f"kill {i}: aimed at {stage} ({what}, +{delay:.2f} s), hit {hit} {t:.1f} s into the "
                       f"attempt" + (f", leaving {', '.join(left)}" if left else "")
                       for i, stage, what, delay, hit, t, left in kills)
    report = (f"kill plan of seed {SEED}, {len(kills)} kills, {time.monotonic() - t_start:.0f} s in all:\n"
              f"{report}")
    print(report)
    hit = {k[4] for k in kills}
    for stage in ("collect", "V", "series", "M", "CMA-ES"):
        assert stage in hit, f"no kill landed in {stage}:\n{report}"

    names = listing(full)
    assert listing(killed) == names, (f"files only in the killed run: {sorted(listing(killed) - names)}, only in "
                                      f"the uninterrupted one: {sorted(names - listing(killed))}\n{report}")
    for name in sorted(n for n in names if not n.endswith("/")):
        assert_same(load_artifact(killed / name, name), load_artifact(full / name, name), name)
