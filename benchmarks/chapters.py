"""How long each chapter takes to run on a profile, alone, as a reader runs it (from book/, a fresh kernel).

    python benchmarks/chapters.py --profile gpu               # every chapter, on a GPU machine
    python benchmarks/chapters.py --profile default 03 05     # chapters 3 and 5

Each chapter is executed with nbclient in book/ (the runs it trains land in runs/, as when a reader opens
it); the table gives its seconds and the slowest cell's. Chapters share the CarRacing run of chapters 3, 5
and 7, so the first of them pays for it: use --fresh to move runs/book-* aside first (kept in runs/.aside-*),
which times each chapter as on Colab, where it runs alone. Record the results in benchmarks/README.md.
"""
import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_chapter(path: Path, profile: str, timeout: int) -> tuple[float, float, str]:
    """(seconds, slowest cell's seconds, "ok" or the error's last line) of one chapter."""
    import nbformat
    from nbclient import NotebookClient

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from nbclient_poll import patch
    patch()  # nbclient's lost wake-up after a widget cell (book/_ext/nbclient_poll.py)

    nb = nbformat.read(path, as_version=4)
    os.environ["WMLIB_PROFILE"] = profile
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    cells, status = [], "ok"
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            t = time.perf_counter()
            try:
                client.execute_cell(cell, index)
            except Exception as e:  # noqa: BLE001  (reported in the table; the next chapter still runs)
                status = str(e).strip().splitlines()[-1][:120]
                break
            cells.append(time.perf_counter() - t)
    return time.perf_counter() - start, max(cells, default=0.0), status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers (default: all)")
    parser.add_argument("--profile", default="default", help="WMLIB_PROFILE for every chapter")
    parser.add_argument("--fresh", action="store_true", help="move runs/book-* aside before each chapter")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may take")
    args = parser.parse_args(argv)
    chapters = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        chapters = [p for p in chapters if p.name[:2] in {c.zfill(2) for c in args.chapters}]
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"profile {args.profile} on {device}, torch {torch.__version__}\n")
    print("| Chapter | seconds | slowest cell (s) | result |\n|---|---:|---:|---|")
    total = 0.0
    for path in chapters:
        if args.fresh:
            for run in (ROOT / "runs").glob("book-*"):
                shutil.move(run, ROOT / "runs" / f".aside-{time.time_ns()}-{run.name}")
        seconds, slowest, status = run_chapter(path, args.profile, args.timeout)
        total += seconds
        print(f"| {path.stem} | {seconds:.0f} | {slowest:.0f} | {status} |", flush=True)
    print(f"| all | {total:.0f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
