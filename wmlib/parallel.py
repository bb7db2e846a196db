"""Parallel work on worker processes through `concurrent.futures`.

Every parallel stage (collection, CMA-ES, evaluation) hands picklable tasks to an Executor. Workers
are spawned (not forked: VizDoom, pygame and torch's thread pools do not survive a fork cleanly) and
limited to one torch thread each, since several processes each running a multi-threaded torch on
two cores slow each other down many times over.
"""
import contextlib
import multiprocessing as mp
import os
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed

from tqdm.auto import tqdm


def _init_worker():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)


@contextlib.contextmanager
def single_torch_thread():
    """Run batch-of-one inference on one thread: torch's thread pool only slows such tiny ops down."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_workers(workers: int | None) -> int:
    return max(1, os.cpu_count() or 1) if workers is None else max(0, int(workers))


def make_executor(workers: int | None) -> Executor | None:
    """A process pool of `workers` processes, or None (run in this process) for 0 or 1 worker."""
    n = resolve_workers(workers)
    if n <= 1:
        return None
    return ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"), initializer=_init_worker)


def run_tasks(fn, tasks: list, executor: Executor | None, desc: str = "", progress: bool = True):
    """Yield (index, result) for fn(task) over tasks, as they finish; in this process if no executor."""
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    try:
        if executor is None:
            for i, t in enumerate(tasks):
                with single_torch_thread():
                    result = fn(t)
                yield i, result
                bar.update()
            return
        futures = {executor.submit(fn, t): i for i, t in enumerate(tasks)}
        try:
            for f in as_completed(futures):
                yield futures[f], f.result()
                bar.update()
        finally:
            for f in futures:
                f.cancel()
    finally:
        bar.close()
