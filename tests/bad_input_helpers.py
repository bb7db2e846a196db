"""Helpers of the bad-input sweep (tests/test_bad_inputs.py): folder snapshots and a full disk."""
import os
import pickle
import resource
import select
import shutil
import signal
import time
import warnings
from pathlib import Path


def snapshot(root: Path) -> dict:
    """Every file under root -> (size, mtime_ns): what a case may not create or change."""
    out = {}
    for p in Path(root).rglob("*"):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def temp_leftovers(root: Path) -> list:
    """Temporary files and folders of wmlib's atomic writers (.NAME.XXXX.tmp, .packed.tmp) under root."""
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.name.endswith(".tmp"))


def link_tree(src: Path, dst: Path, skip=()) -> Path:
    """dst with hard links to src's files (read-only use: a case that damages a file writes a new one)."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in Path(src).iterdir():
        if p.is_file() and p.name not in skip:
            try:
                os.link(p, dst / p.name)
            except OSError:
                shutil.copy2(p, dst / p.name)
    return dst


def under_file_limit(limit: int, fn, timeout: float = 300):
    """fn() in a forked child where writing a file beyond `limit` bytes fails with EFBIG, as on a full disk.

    Returns fn's result, or raises the exception it raised (both pickled back through a pipe). The child is
    a fork, not a new interpreter: torch is already imported, so it starts in milliseconds.
    """
    r, w = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() beside torch's idle threads; the child
        warnings.simplefilter("ignore", DeprecationWarning)  # only writes files, and a hang fails (timeout)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing it
            import torch
            torch.set_num_threads(1)  # the parent's thread pool did not survive the fork
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            try:
                out = ("ok", fn())
            except BaseException as e:  # noqa: BLE001 - handed to the parent as it is
                out = ("error", e)
            try:
                data = pickle.dumps(out)
            except Exception as e:  # an unpicklable result or exception
                data = pickle.dumps(("error", RuntimeError(f"{out[1]!r} (unpicklable: {e})")))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    deadline, chunks = time.monotonic() + timeout, []
    try:
        while True:  # read until the child closes its end (it exits), or give up
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"the child with a {limit}-byte file limit hung for {timeout} s")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not data:
        raise AssertionError("the child with a file size limit died without a result")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise value
    return value
