"""The book build that tests/test_notebooks.py and tests/test_book.py share.

Executing the chapters is most of the test suite's time, so it happens once per pytest session: one
`book/build.sh` on the smoke profile (the reader's build script, so CI checks what readers run)
executes every selected chapter and renders the HTML. The per-chapter tests then read what it left:
the executed notebooks (_build/jupyter_execute) and the build log.

The build goes to a fresh folder (pytest's tmp_path_factory, or $WMLIB_BOOK_OUT) with two overrides
of _config.yml: a failing chapter does not stop the build (so every chapter gets its own verdict
with its traceback), and a cell may run at most CELL_TIMEOUT_S seconds. Only the chapters that the
selected tests need are built, so `pytest tests/test_notebooks.py -k 04_` executes chapter 4 alone.

Set WMLIB_SKIP_BOOK=1 to skip every test that needs the build (a local shortcut; never in CI).
"""
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 300  # per cell, smoke profile: a hung cell fails its chapter instead of CI
BUILD_TIMEOUT_S = 40 * 60
# ViZDoom writes these into the working directory of any process that starts the game; chapters run
# in book/ (the build is started in the repository root).
VIZDOOM_LITTER = ("_vizdoom.ini", "_vizdoom")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def local_skip(var: str) -> bool:
    """True when `var`=1 asks to skip, outside CI: in CI a skip must not stand in for a pass."""
    if os.environ.get(var) != "1":
        return False
    if os.environ.get("CI"):
        pytest.fail(f"{var}=1 is set in CI, where every book test must run")
    return True


def docname(chapter: Path) -> str:
    """book/01_world_models.ipynb -> 'book/01_world_models' (the name _toc.yml uses)."""
    return chapter.relative_to(ROOT).with_suffix("").as_posix()


def toc_docnames(toc: dict) -> list:
    """Every file in a jb-book _toc.yml, root first, in reading order."""
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections"))
    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    return names


@dataclass
class BookBuild:
    out: Path              # --path-output: HTML in out/_build/html
    chapters: list         # the chapters built (Paths), in order
    returncode: int
    log: str               # the build's output, ANSI codes removed
    seconds: float
    leftovers: list = field(default_factory=list)  # processes the chapters left running
    screenshots: Path = None
    page_seconds: dict = field(default_factory=dict)

    @property
    def html(self) -> Path:
        return self.out / "_build" / "html"

    def page(self, chapter: Path) -> Path:
        return self.html / (docname(chapter) + ".html")

    def executed(self, chapter: Path) -> Path:
        return self.out / "_build" / "jupyter_execute" / chapter.relative_to(ROOT)

    def log_lines(self, chapter: Path) -> list:
        """The log's lines about `chapter` (myst-nb and Sphinx prefix them with its path)."""
        return [line for line in self.log.splitlines() if str(chapter) in line]

    def execution_seconds(self, chapter: Path):
        for line in self.log_lines(chapter):
            m = re.search(r"Executed notebook in ([0-9.]+) seconds", line)
            if m:
                return float(m.group(1))
        return None

    def execution_error(self, chapter: Path) -> str:
        """Why `chapter` did not run cleanly on smoke ('' when it did): the failing cell and its
        traceback, else (a cell timeout, a dead kernel) the build log's account."""
        import nbformat

        executed = self.executed(chapter)
        if not executed.exists():
            # A kernel that dies (DeadKernelError) stops the whole build, not just its chapter.
            started = re.findall(r"^(\S+\.ipynb): Executing notebook", self.log, re.M)
            errors = re.findall(r"^\S*(?:Error|Exception): \S.*$", self.log, re.M)
            where = (f"the build stopped while executing {Path(started[-1]).name}" if started and
                     self.returncode != 0 else "")
            lines = "\n".join(self.log_lines(chapter)) or "(no line about it)"
            return (f"{chapter.name} was not executed by the book build (exit code {self.returncode}). "
                    f"{where}{': ' + errors[-1] if errors and where else ''}.\nThe log about {chapter.name}:\n"
                    f"{lines}\n--- the end of the build log ---\n{self.tail()}")
        nb = nbformat.read(executed, as_version=4)
        code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        not_run = [i for i, c in code if c.source.strip() and c.get("execution_count") is None]
        for i, cell in code:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    tb = ANSI.sub("", "\n".join(output.get("traceback", [])))
                    return (f"{chapter.name}: cell {i} raised {output.get('ename')}: {output.get('evalue')}\n"
                            f"--- cell {i} ---\n{cell.source}\n--- traceback ---\n{tb}\n"
                            f"(cells not executed after it: {not_run})")
        marker = f"{chapter}: WARNING: Executing notebook failed"
        if marker in self.log:
            return f"{chapter.name}: execution failed; the build log says:\n" + self.log.split(marker, 1)[1][:5000]
        if not_run:
            return f"{chapter.name}: code cells {not_run} were not executed; the log about it:\n" + \
                "\n".join(self.log_lines(chapter))
        return ""

    def tail(self, n=60) -> str:
        return "\n".join(self.log.splitlines()[-n:])


def _selected_chapters(session) -> list:
    """The chapters that the selected tests use (their `chapter` parameter)."""
    wanted = set()
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec and "chapter" in callspec.params and "book_build" in getattr(item, "fixturenames", ()):
            wanted.add(callspec.params["chapter"])
    return [c for c in CHAPTERS if c in wanted]


def _remove_new_litter(before: set) -> None:
    for folder in (BOOK, ROOT):
        for name in VIZDOOM_LITTER:
            target = folder / name
            if (folder, name) in before or not target.exists():
                continue
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink()


def _run_build(chapters: list, out: Path) -> BookBuild:
    import yaml

    if shutil.which("jupyter-book") is None:
        pytest.fail('jupyter-book is not installed: pip install -e ".[test]" (it is in the test extras)')
    out.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.setdefault("execute", {})["timeout"] = CELL_TIMEOUT_S
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["nb_execution_raise_on_error"] = False  # each chapter gets its own verdict
    sphinx_config["nb_execution_show_tb"] = True          # tracebacks in the log, too
    # jupyter-book finds local extensions relative to the config file, which now lives elsewhere.
    local = config["sphinx"].get("local_extensions") or {}
    config["sphinx"]["local_extensions"] = {name: str(ROOT / path) for name, path in local.items()}
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    # --all: every chapter executed again, even in a reused $WMLIB_BOOK_OUT
    args = ["--all", "--path-output", str(out), "--config", str(out / "_config.yml")]

    repo_toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    if sorted(toc_docnames(repo_toc)) != sorted(docname(c) for c in chapters):
        # A subset (pytest -k), or chapters that _toc.yml does not list yet (test_book checks it).
        toc = {"format": "jb-book", "root": docname(chapters[0])}
        if len(chapters) > 1:  # an empty list is a malformed toc
            toc["chapters"] = [{"file": docname(c)} for c in chapters[1:]]
        (out / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
        args += ["--toc", str(out / "_toc.yml")]

    env = {**os.environ, "WMLIB_PROFILE": "smoke", "PYTHONUNBUFFERED": "1",
           # the kernels import this checkout's wmlib, whether or not it is pip-installed
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    litter_before = {(folder, name) for folder in (BOOK, ROOT) for name in VIZDOOM_LITTER
                     if (folder / name).exists()}
    start = time.perf_counter()
    log_path = out / "build.log"  # written as the build goes: `tail -f` it to follow a long run
    timed_out = False
    with open(log_path, "w") as log_file:
        # Its own process group, so that a timeout also ends the kernels it started.
        proc = subprocess.Popen(["bash", str(BOOK / "build.sh"), *args], cwd=ROOT, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = -1
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): do not leave the build running
                os.killpg(proc.pid, signal.SIGKILL)
            _remove_new_litter(litter_before)
    seconds = time.perf_counter() - start
    leftovers = _end_leftovers(log_path)
    log = ANSI.sub("", log_path.read_text(errors="replace"))
    if timed_out:
        log += f"\n[tests] book build timed out after {BUILD_TIMEOUT_S} s"
    log_path.write_text(log)
    return BookBuild(out=out, chapters=chapters, returncode=returncode, log=log, seconds=seconds,
                     leftovers=leftovers)


def _end_leftovers(log_path: Path) -> list:
    """End the processes that the build started and left running; return their command lines.

    Every process the build starts inherits its output, the log file, so whatever still holds the
    log open now is a leftover: typically a game (ViZDoom runs as its own process) that a chapter
    never closed. Linux only (/proc); elsewhere nothing is found.
    """
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc_dir.name) == os.getpid():
                continue
            if any(os.readlink(fd) == str(log_path) for fd in (proc_dir / "fd").iterdir()):
                cmd = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(proc_dir.name), cmd.strip()[:200]))
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    for pid, _ in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return [f"pid {pid}: {cmd}" for pid, cmd in found]


@pytest.fixture(scope="session")
def book_build(request, tmp_path_factory) -> BookBuild:
    """The book built once on the smoke profile, with the chapters the selected tests need."""
    if local_skip("WMLIB_SKIP_BOOK"):
        pytest.skip("WMLIB_SKIP_BOOK=1: the book is not built, its chapters not executed")
    chapters = _selected_chapters(request.session) or CHAPTERS
    out = Path(os.environ["WMLIB_BOOK_OUT"]) if os.environ.get("WMLIB_BOOK_OUT") else tmp_path_factory.mktemp("book")
    build = _run_build(chapters, out)
    request.config._wmlib_book_build = build
    return build


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """smoke_runs(env) -> the run directory of `python -m wmlib run --profile smoke` (helpers.smoke_run_args)
    for env, made on first use and shared for the whole session: tests/test_cli.py checks it, and
    tests/test_kill_anywhere.py compares its killed run with it. Tests may rerun it, never change its results."""
    from .helpers import smoke_run_args, wmlib_cli
    runs = {}

    def get(env: str) -> Path:
        if env not in runs:
            run_dir = tmp_path_factory.mktemp(env) / "run"
            wmlib_cli(*smoke_run_args(env, run_dir), check=True)
            runs[env] = run_dir
        return runs[env]
    return get


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    sweep = getattr(config, "_wmlib_bad_inputs", None)  # counted by tests/test_bad_inputs.py
    if sweep is not None:
        terminalreporter.write_line(f"bad-input sweep: {sweep['tried']} inputs tried, {sweep['clear']} clear errors")
    build = getattr(config, "_wmlib_book_build", None)
    if build is None:
        return
    tr = terminalreporter
    tr.section("book (smoke profile)")
    tr.write_line(f"build: {build.seconds:.0f} s, exit code {build.returncode}, log {build.out / 'build.log'}")
    for chapter in build.chapters:
        secs = build.execution_seconds(chapter)
        page = build.page_seconds.get(chapter)
        tr.write_line(f"  {chapter.name}: executed in {'-' if secs is None else f'{secs:.1f} s'}"
                      + ("" if page is None else f", checked in Chromium in {page:.1f} s"))
    tr.write_line(f"HTML: {build.html}")
    if build.screenshots is not None:
        tr.write_line(f"screenshots: {build.screenshots}")


def pytest_collection_modifyitems(config, items):
    """Tests marked colab_full (every chapter on the simulated Colab, about 15 minutes) run only when the
    -m expression names them: `python -m pytest tests/test_colab.py -m colab_full`."""
    if "colab_full" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("colab_full") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
