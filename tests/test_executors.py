"""Parallel work that survives its workers: a local pool whose worker is killed, and a real Dask
cluster on loopback (a scheduler and two workers, no mocks) that loses a worker mid-CMA-ES."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wmlib.checkpoint import save_model
from wmlib.mdnrnn import MDNRNN
from wmlib.parallel import DaskExecutor, WeightsBundle, WorkerPool, bundle_weights, local_weights, run_tasks, ship_weights
from wmlib.run.pipeline import open_run
from wmlib.run.profiles import get_config
from wmlib.vae import ConvVAE

from .helpers import ROOT, same_tensors, wmlib_cli


def die_once(task):
    """Square task[0]; the first call that sees task[1]'s marker missing kills its own process."""
    x, marker = task
    if x == 3 and not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_killed_local_worker_costs_only_its_task(tmp_path):
    pool = WorkerPool(2)
    try:
        got = dict(run_tasks(die_once, [(i, str(tmp_path / "died")) for i in range(8)], pool, progress=False))
    finally:
        pool.shutdown()
    assert (tmp_path / "died").exists(), "the worker was never killed: the test tested nothing"
    assert got == {i: i * i for i in range(8)}


PARENT = """
import time
from wmlib.parallel import WorkerPool

if __name__ == "__main__":
    pool = WorkerPool(2)
    futures = [pool.submit(time.sleep, 120) for _ in range(4)]  # more queued work than the workers hold
    time.sleep(1)
    print(*pool._pool._processes, flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie that nobody reaps has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # no procfs (not Linux): kill(pid, 0) is all there is; with one, pid has just ended
        return not Path("/proc").is_dir()
    return state != "Z"


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """kill -9 of the main process: its workers stop within seconds instead of playing out queued tasks."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids), pids
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent"


def test_weights_bundle_unpacks_to_the_same_files(tmp_path):
    torch.manual_seed(0)
    cfg = get_config("doom", "smoke")
    save_model(ConvVAE(cfg.vae), tmp_path, "vae", "doom")
    bundle = bundle_weights(tmp_path, ("vae", "mdnrnn"))  # no M here: only what exists is sent
    assert isinstance(bundle, WeightsBundle) and sorted(n for n, _ in bundle.files) == ["vae.json", "vae.safetensors"]
    where = Path(local_weights(bundle))
    assert where != tmp_path and same_tensors(where / "vae.safetensors", tmp_path / "vae.safetensors")
    assert local_weights(bundle) == str(where)  # unpacked once
    assert local_weights(str(tmp_path)) == str(tmp_path)


def test_ship_weights_reads_unchanged_files_once(tmp_path):
    class Shipper:  # what ship_weights needs of a remote executor: a ship(bundle) method
        def __init__(self):
            self.shipped = []

        def ship(self, bundle):
            self.shipped.append(bundle)
            return bundle.digest

    cfg, ex = get_config("doom", "smoke"), Shipper()
    torch.manual_seed(0)
    save_model(ConvVAE(cfg.vae), tmp_path, "vae", "doom")
    first, again = ship_weights(ex, tmp_path, ("vae",)), ship_weights(ex, tmp_path, ("vae",))
    assert first == again and ex.shipped[0] is ex.shipped[1]  # the same bundle: the files were not read again
    save_model(ConvVAE(cfg.vae), tmp_path, "vae", "doom")  # new weights (the generator moved on)
    assert ship_weights(ex, tmp_path, ("vae",)) != first
    assert ship_weights(None, tmp_path) == str(tmp_path)  # local executors get the path


def untrained_doom_run(run_dir: Path) -> Path:
    """A smoke Doom run directory with V and M at their seeded initial weights: enough to play real
    episodes with CMA-ES candidates (what is compared here is where the work ran, not how well)."""
    cfg = get_config("doom", "smoke")
    open_run(run_dir, cfg)
    torch.manual_seed(0)
    save_model(ConvVAE(cfg.vae), run_dir, "vae", "doom")
    save_model(MDNRNN(cfg.mdnrnn), run_dir, "mdnrnn", "doom")
    return run_dir


GENERATIONS = 3
CMAES = ["train-controller", "--env", "doom", "--profile", "smoke", "--where", "real", "--generations",
         str(GENERATIONS), "--no-progress"]


@pytest.mark.slow
def test_dask_cluster_loses_a_worker_and_gets_the_local_results(tmp_path):
    distributed = pytest.importorskip("distributed", reason="the test extras install distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    sched_file = tmp_path / "scheduler.json"
    procs = []

    def spawn(cmd, log):
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / log, "w"),
                             start_new_session=True)
        procs.append(p)
        return p

    try:
        spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
               "--no-dashboard", "--scheduler-file", str(sched_file)], "scheduler.log")
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sched_file.exists(), (tmp_path / "scheduler.log").read_text()[-2000:]
        workers = {name: spawn([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(sched_file),
                                "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                "--name", name], f"{name}.log") for name in ("w0", "w1")}
        client = distributed.Client(scheduler_file=str(sched_file), timeout=60)
        client.wait_for_workers(2, timeout=60)
        address = client.scheduler.address

        local, remote = untrained_doom_run(tmp_path / "local"), untrained_doom_run(tmp_path / "dask")
        job = subprocess.Popen([sys.executable, "-m", "wmlib", *CMAES, "--run-dir", str(remote),
                                "--dask-scheduler", address], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)

        # Kill a worker while it is running a task, after the first generation (so mid-run, not at start).
        victim, deadline = None, time.monotonic() + 240
        while victim is None and time.monotonic() < deadline and job.poll() is None:
            done = (remote / "cmaes" / "log.jsonl").exists()
            busy = [a for a, keys in client.processing().items() if keys] if done else []
            if busy:
                info = client.scheduler_info()["workers"]
                victim = info[busy[0]]["name"]
                os.killpg(workers[victim].pid, signal.SIGKILL)  # the group: its Doom games go with it
                workers[victim].wait()
            time.sleep(0.05)
        assert victim is not None, "the Dask run ended before a worker could be killed: " + (
            job.communicate()[1][-3000:] if job.poll() is not None else "")
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-3000:]
        with np.load(remote / "cmaes" / "state.npz") as f:
            assert f["fitness"].shape[0] == GENERATIONS
        assert len(client.scheduler_info()["workers"]) == 1, "the killed worker is still there"
        client.close()

        # Collection on the cluster: the worker sends the episodes back and they are written here.
        from wmlib.collect import collect
        from wmlib.episodes import load_episode
        ex = DaskExecutor(address)
        try:
            remote_eps = collect("doom", tmp_path / "dask_eps", 2, seed=5, max_steps=60, executor=ex, progress=False)
        finally:
            ex.shutdown()
        local_eps = collect("doom", tmp_path / "local_eps", 2, seed=5, max_steps=60, workers=1, progress=False)
        for a, b in zip(remote_eps, local_eps):
            ea, eb = load_episode(a), load_episode(b)
            assert all(np.array_equal(ea[k], eb[k]) for k in eb), f"{a.name}: Dask and local collection differ"

        wmlib_cli(*CMAES, "--run-dir", local, "--workers", "2", check=True)
        with np.load(local / "cmaes" / "state.npz") as a, np.load(remote / "cmaes" / "state.npz") as b:
            assert np.array_equal(a["fitness"], b["fitness"]), "the Dask run's fitness differs from the local run's"
            assert np.array_equal(a["checksum"], b["checksum"])
        assert same_tensors(local / "controller.safetensors", remote / "controller.safetensors")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
