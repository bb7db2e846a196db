"""Parallel work through `concurrent.futures`: local worker processes, a Dask cluster, or any Executor.

Every parallel stage (collection, CMA-ES in the real game, evaluation) hands picklable tasks to an
Executor and gets results back in any order; seeds travel with the tasks, so where a task runs never
changes its result.

- Local (the default): `WorkerPool`, spawned processes (not forked: VizDoom, pygame and torch's thread
  pools do not survive a fork cleanly), one torch thread each, since several processes each running a
  multi-threaded torch on two cores slow each other down many times over. A worker that dies (kill -9,
  out of memory) costs only its unfinished tasks: `run_tasks` starts a new pool and hands them out again.
- Dask (`--dask-scheduler ADDRESS`): `DaskExecutor` submits the same tasks to a `distributed.Client`.
  Workers need not share this machine's disk: weights travel as a `WeightsBundle`, sent to the cluster
  once and referenced by the tasks, and collected episodes come back to be written here. Dask
  itself reruns the tasks of a worker it loses on the others.
- Any other `concurrent.futures.Executor` (e.g. mpi4py's `MPIPoolExecutor`) can be passed as
  `executor=` to `collect`, `evaluate`, `run_rollouts` or the pipeline's stages. Tasks then carry
  paths to the weights and workers write episodes themselves, so its workers must see the run directory
  (a shared filesystem, as on most MPI clusters).
"""
import contextlib
import hashlib
import multiprocessing as mp
import os
import tempfile
import threading
import time
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .errors import WMError


def _init_worker():
    parent = mp.parent_process()  # from the spawn handshake: right even if the parent died meanwhile
    threading.Thread(target=_exit_with_parent, args=(parent.pid if parent else os.getppid(),), daemon=True).start()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)


def _exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """End this worker once the process that started it is gone.

    A parent killed outright (kill, a closed terminal) never shuts its pool down, and its workers would
    play out the tasks already queued to them, minutes of CPU for results nobody reads. An orphan is
    adopted by another process, so its parent pid changes.
    """
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


@contextlib.contextmanager
def single_torch_thread():
    """Run batch-of-one inference on one thread: torch's thread pool only slows such tiny ops down. Chapter 5."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_workers(workers: int | None) -> int:
    return max(1, os.cpu_count() or 1) if workers is None else max(0, int(workers))


class WorkerPool(Executor):
    """`workers` spawned processes that can be replaced when one of them dies (see run_tasks)."""

    def __init__(self, workers: int):
        self.max_workers = workers
        self._pool = self._new_pool()

    def _new_pool(self):
        return ProcessPoolExecutor(max_workers=self.max_workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker)

    def submit(self, fn, /, *args, **kwargs):
        return self._pool.submit(fn, *args, **kwargs)

    def restart(self) -> None:
        """A fresh pool: after a worker died, the old one refuses every task (BrokenProcessPool)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def make_executor(workers: int | None) -> Executor | None:
    """A pool of `workers` local processes, or None (run in this process) for 0 or 1 worker. Chapter 7."""
    n = resolve_workers(workers)
    return None if n <= 1 else WorkerPool(n)


@contextlib.contextmanager
def open_executor(executor: Executor | None, workers: int | None, tasks: int | None = None):
    """The executor a piece of parallel work runs on: `executor` if one is given (its owner shuts it down),
    else a pool of `workers` local processes (at most `tasks`; None for 0 or 1: this process) that this
    block owns and shuts down however it ends, cancelling the tasks still queued."""
    if executor is not None:
        yield executor
        return
    n = resolve_workers(workers)
    pool = make_executor(n if tasks is None else min(tasks, n))
    try:
        yield pool
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def executor_workers(executor: Executor | None, default: int = 1) -> int:
    """How many tasks `executor` runs at once (to size batches), `default` if it does not say."""
    if executor is None:
        return 1
    n = getattr(executor, "max_workers", None) or getattr(executor, "_max_workers", None)
    return int(n) if n else default


# ---- weights for workers that do not share this machine's disk --------------------------------------

@dataclass(frozen=True)
class WeightsBundle:
    """The files of a weights directory, as bytes, named by a digest of their contents."""
    digest: str
    files: tuple  # ((file name, bytes), ...)


def bundle_weights(directory, names=("vae", "mdnrnn", "controller")) -> WeightsBundle:
    """Read the .safetensors/.json files of `names` (those that exist) from a weights directory."""
    files, h = [], hashlib.sha256()
    for name in names:
        for suffix in (".json", ".safetensors"):
            p = Path(directory) / f"{name}{suffix}"
            if p.exists():
                data = p.read_bytes()
                files.append((p.name, data))
                h.update(p.name.encode() + b"\0" + data)
    if not files:
        raise WMError(f"{directory} holds none of {', '.join(names)} (.safetensors/.json): nothing to send workers")
    return WeightsBundle(h.hexdigest()[:20], tuple(files))


_UNPACK_LOCK = threading.Lock()


def local_weights(weights) -> str:
    """In a worker: a directory holding the weights. A path is used as it is; a bundle is unpacked once
    per machine into the temp directory (atomically: written beside, then renamed into place)."""
    if not isinstance(weights, WeightsBundle):
        return str(weights)
    target = Path(tempfile.gettempdir()) / f"wmlib-weights-{weights.digest}"
    with _UNPACK_LOCK:
        if not target.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=f".wmlib-weights-{weights.digest}-", dir=target.parent))
            for name, data in weights.files:
                (tmp / name).write_bytes(data)
            try:
                os.rename(tmp, target)
            except OSError:  # another process on this machine unpacked the same bundle first
                for p in tmp.iterdir():
                    p.unlink()
                tmp.rmdir()
    return str(target)


def ship_weights(executor: Executor | None, directory, names=("vae", "mdnrnn", "controller")):
    """What tasks should carry to name a weights directory: its path, or, for an executor whose workers
    have disks of their own (DaskExecutor), a handle to its bytes already sent to every worker."""
    ship = getattr(executor, "ship", None)
    if ship is None:
        return str(directory)
    # A CMA-ES generation ships the same V and M as the last one: skip reading and hashing files whose
    # inode, size and modification time have not changed since they were last bundled (a save renames a
    # new file into place: a new inode).
    files = [Path(directory) / f"{n}{suffix}" for n in names for suffix in (".json", ".safetensors")]
    where = (str(Path(directory).resolve()), tuple(names))
    stamp = tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in (f.stat() for f in files if f.exists()))
    if _BUNDLES.get(where, (None,))[0] != stamp:
        _BUNDLES[where] = (stamp, bundle_weights(directory, names))
    return ship(_BUNDLES[where][1])


_BUNDLES: dict = {}  # (directory, names) -> (the files' stat stamps, their bundle): the latest only


class DaskExecutor(Executor):
    """concurrent.futures on a Dask distributed cluster: `DaskExecutor("tcp://host:8786")`.

    Tasks are impure (never merged with equal ones) and retried `retries` times if they raise; tasks of a
    worker that dies are rerun elsewhere by the scheduler itself. Weight bundles are sent once per
    content (a CMA-ES generation sends V and M once, and each task only its candidate's parameters).
    """
    remote = True  # workers may not see this machine's files

    def __init__(self, address: str, retries: int = 2, timeout: float = 30):
        try:
            from distributed import Client
        except ImportError as e:
            raise WMError("--dask-scheduler needs Dask: pip install 'distributed>=2024.1'") from e
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except OSError as e:
            raise WMError(f"cannot reach the Dask scheduler at {address!r} ({e}); start one with `dask scheduler` "
                          "and workers with `dask worker ADDRESS --nthreads 1`, and pass its tcp:// address") from e
        from distributed import WorkerPlugin

        class OneTorchThread(WorkerPlugin):  # as in local workers, for the same speed and the same results
            def setup(self, worker):
                _init_worker()

        self.client.register_plugin(OneTorchThread(), name="wmlib-one-torch-thread")
        self._executor = self.client.get_executor(pure=False, retries=retries)
        self._shipped: dict = {}

    @property
    def max_workers(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def submit(self, fn, /, *args, **kwargs):
        return self._executor.submit(fn, *args, **kwargs)

    def ship(self, bundle: WeightsBundle):
        # A task that returns the bundle, not client.scatter: scattered data that the cluster loses (the
        # scheduler's memory manager keeps one replica, and its worker dies) cannot be recovered, while a
        # task's result is simply computed again on another worker. Workers fetch it from each other.
        if bundle.digest not in self._shipped:
            with warnings.catch_warnings():  # "large object in the task graph": sent once, on purpose
                warnings.simplefilter("ignore", UserWarning)
                self._shipped[bundle.digest] = self.client.submit(_same, bundle, key=f"wmlib-weights-{bundle.digest}")
        return self._shipped[bundle.digest]

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._executor.shutdown(wait=wait)
        self.client.close()


def _same(x):
    return x


def run_tasks(fn, tasks: list, executor: Executor | None, desc: str = "", progress: bool = True,
              max_restarts: int = 3):
    """Yield (index, result) for fn(task) over tasks, as they finish; in this process if no executor.

    If a local worker dies, the pool is restarted and the tasks that had not finished are submitted
    again (up to max_restarts times): each task is a pure function of its arguments, so the results are
    the same as without the fault.
    """
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    try:
        if executor is None:
            for i, t in enumerate(tasks):
                with single_torch_thread():
                    result = fn(t)
                yield i, result
                bar.update()
            return
        pending = set(range(len(tasks)))
        restarts = 0
        while pending:
            futures = {}
            try:
                for i in sorted(pending):
                    futures[executor.submit(fn, tasks[i])] = i
                for f in as_completed(futures):
                    try:
                        result = f.result()
                    except BrokenProcessPool:
                        if restarts >= max_restarts or not hasattr(executor, "restart"):
                            raise
                        break
                    pending.discard(futures[f])
                    yield futures[f], result
                    bar.update()
            except BrokenProcessPool:  # the pool broke before or while the tasks were handed out
                if restarts >= max_restarts or not hasattr(executor, "restart"):
                    raise
            finally:
                for f in futures:
                    f.cancel()
            if pending:
                restarts += 1
                executor.restart()
    finally:
        bar.close()
