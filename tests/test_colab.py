"""The book on Colab, simulated here.

Fast checks: one URL names where the project lives (pyproject.toml, _config.yml, every chapter's set-up
cell); exercise solutions are hidden on Colab too; the shipped weights are found beside the installed
wmlib; a GPU picks the gpu profile.

The simulation (`colab_runtime`): a fresh virtual environment with the versions a Colab runtime ships of
the packages that matter here (tests/colab/runtime.txt: ipywidgets 7.7.1, numpy, torch, IPython...), a
stand-in `google.colab` module, and the chapters' own set-up cell pointed (WMLIB_SOURCE) at a git
repository of this working tree, which it clones as it would clone the project on Colab. Chapters 7, 8
and 9 then run on the smoke profile, each alone in an empty folder. Every chapter:

    python -m pytest -q tests/test_colab.py -m colab_full      (about 15 minutes; not in CI)
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "tests" / "colab" / "runtime.txt"
KEEP = ("torch", "numpy", "ipywidgets")
CI_CHAPTERS = ("07_c_carracing", "08_doom_dream", "09_cheating")
ALL_CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def install_cells():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import install_cells as mod
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return mod


# One URL, hidden solutions, the weights beside wmlib, the gpu profile

def test_the_project_url_is_the_same_everywhere():
    import yaml

    cells = install_cells()
    url = cells.repository_url()
    assert url.startswith("https://")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == url, "_config.yml's repository.url is not pyproject.toml's Repository"
    stale = cells.out_of_date(url)
    assert not stale, (f"{[p.name for p in stale]}: the set-up cell is not the template with {url}; "
                       "run python scripts/install_cells.py")
    for chapter in cells.CHAPTERS:
        assert url in "".join(cells.setup_cell(json.loads(chapter.read_text()))["source"])


def test_every_page_launches_its_chapter_on_colab_from_the_repository(book_build):
    """The built pages' launch and repository buttons use the project's URL (from _config.yml)."""
    url = install_cells().repository_url()
    path = url.removeprefix("https://github.com/")
    for chapter in book_build.chapters:
        page = book_build.page(chapter)
        if not page.exists():
            continue  # test_notebooks reports the chapter that failed to build
        html = page.read_text()
        assert f"https://colab.research.google.com/github/{path}/blob/main/book/{chapter.name}" in html, \
            f"{page.name} has no Colab launch button for {chapter.name} at {url}"
        assert f'href="{url}"' in html, f"{page.name} has no repository button to {url}"


def test_the_setup_cell_is_valid_ipython_and_keeps_the_runtime_packages():
    from IPython.core.inputtransformer2 import TransformerManager

    source = install_cells().install_cell("https://example.org/x")
    python = TransformerManager().transform_cell(source)  # what IPython (and Colab) runs
    compile(python, "setup-cell", "exec")
    assert "run_line_magic('pip', 'install --quiet --constraint {keep} --editable {src}')" in python
    assert "system('git clone --quiet --depth 1 {SOURCE or REPOSITORY} {src}')" in python
    assert str(KEEP) in source


def test_exercise_solutions_are_hidden_on_colab_and_in_the_html_book():
    found = 0
    for chapter in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(chapter.read_text())
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and src.startswith("# @title Solution"):
                found += 1
                meta = cell["metadata"]
                assert "hide-cell" in meta.get("tags", []), f"{chapter.name}: a solution not collapsed in the HTML book"
                assert meta.get("cellView") == "form", f"{chapter.name}: a solution shown on Colab (cellView form)"
                assert meta.get("jupyter", {}).get("source_hidden") is True
            elif cell["cell_type"] == "code":
                assert "hide-cell" not in cell["metadata"].get("tags", []), \
                    f"{chapter.name}: a hidden cell that is no exercise's solution:\n{src[:200]}"
        questions = sum(1 for c in nb["cells"] if c["cell_type"] == "markdown"
                        for line in "".join(c["source"]).splitlines() if line[:2] == "**" and line[2:3].isdigit()
                        and line[3:5] == ". ")
        assert questions == sum(1 for c in nb["cells"] if "".join(c["source"]).startswith("# @title Solution")), \
            f"{chapter.name}: every exercise has one hidden solution"
    assert found >= 30


def test_shipped_weights_are_found_beside_the_installed_wmlib(tmp_path, monkeypatch):
    """On Colab a chapter runs in an empty folder; the set-up cell's clone holds pretrained/ beside wmlib/."""
    from wmlib.book import shipped_weights
    from wmlib.errors import WMError

    monkeypatch.chdir(tmp_path)  # no repository around: repo_root() is this folder
    monkeypatch.delenv("WMLIB_DOOM_WEIGHTS", raising=False)
    assert shipped_weights("doom") == ROOT / "pretrained" / "doom"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("WMLIB_DOOM_WEIGHTS", str(empty))
    with pytest.raises(WMError, match="lacks vae.safetensors, mdnrnn.safetensors.*set WMLIB_DOOM_WEIGHTS"):
        shipped_weights("doom")


def test_a_gpu_picks_the_gpu_profile_unless_one_is_set(monkeypatch, capsys):
    import torch

    from wmlib.book import setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("WMLIB_PROFILE", raising=False)
    assert setup() == ("gpu", "cuda")
    assert "wmlib profile: gpu (WMLIB_PROFILE is unset)" in capsys.readouterr().out
    monkeypatch.setenv("WMLIB_PROFILE", "smoke")
    assert setup() == ("smoke", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WMLIB_PROFILE")
    assert setup() == ("default", "cpu")


# The simulated Colab runtime

RUNNER = r'''
import sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

notebook, folder, out, poll_fix = sys.argv[1:5]
exec(open(poll_fix).read())  # book/_ext/nbclient_poll.py: nbclient's lost wake-up after a widget cell
patch()
nb = nbformat.read(notebook, as_version=4)
client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}})
try:
    client.execute()
except CellExecutionError as e:
    print(str(e)[-3000:], file=sys.stderr)
    sys.exit(3)
finally:
    nbformat.write(nb, out)
'''


def run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
    return done.stdout


def freeze(python: Path) -> dict:
    lines = run([python, "-m", "pip", "list", "--format=json"])
    return {p["name"].lower(): p["version"] for p in json.loads(lines)}


@pytest.fixture(scope="module")
def colab_runtime(tmp_path_factory):
    """(python, env, source, seconds): a fresh virtual environment with Colab's versions (tests/colab/runtime.txt)
    and a stand-in google.colab, and a git repository of this working tree for the set-up cell to clone."""
    start = time.monotonic()
    base = tmp_path_factory.mktemp("colab")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "-r", RUNTIME])
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # google/ stays a namespace package, as on Colab (google.colab beside google.protobuf and others)
    (site / "google" / "colab").mkdir(parents=True)
    (site / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab\'s google.colab (tests/test_colab.py)."""\n')

    # The repository as the set-up cell clones it: this working tree's files (tracked, and new files git
    # does not ignore), committed into a fresh git repository
    source = base / "repository"
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main"]
    run([*git, "init", "-q"], cwd=source)
    run([*git, "add", "-A"], cwd=source)
    run([*git, "commit", "-q", "-m", "the working tree"], cwd=source)

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WMLIB_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "IPYTHON"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv), WMLIB_PROFILE="smoke",
               WMLIB_SOURCE=f"file://{source}", SDL_VIDEODRIVER="dummy", PYTHONUNBUFFERED="1")
    return python, env, source, time.monotonic() - start


def test_installing_wmlib_on_colab_upgrades_none_of_its_packages(colab_runtime, tmp_path):
    """pip's own plan for `pip install wmlib` (no constraint) on Colab's packages leaves torch, numpy and
    ipywidgets as they are; the set-up cell adds a constraint so that this stays true."""
    python, env, source, _ = colab_runtime
    before = freeze(python)
    report = tmp_path / "report.json"
    run([python, "-m", "pip", "install", "--quiet", "--dry-run", "--report", report, str(source)], env=env)
    planned = {item["metadata"]["name"].lower(): item["metadata"]["version"]
               for item in json.loads(report.read_text())["install"]}
    for name in KEEP:
        assert name in before, f"the simulated Colab runtime lacks {name}"
        assert name not in planned, f"pip would replace Colab's {name} {before[name]} with {planned[name]}"
    assert "wmlib" in planned


def run_chapter(colab_runtime, chapter: str, tmp_path: Path) -> dict:
    """Execute book/CHAPTER.ipynb alone in an empty folder of the simulated runtime; the executed notebook."""
    python, env, _, _ = colab_runtime
    folder = tmp_path / chapter
    folder.mkdir()
    shutil.copy(ROOT / "book" / f"{chapter}.ipynb", folder / f"{chapter}.ipynb")  # as Colab opens it: alone
    before = freeze(python)
    done = subprocess.run([python, "-c", RUNNER, folder / f"{chapter}.ipynb", folder, folder / "executed.ipynb",
                           ROOT / "book" / "_ext" / "nbclient_poll.py"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"{chapter} failed on the simulated Colab:\n{done.stderr[-4000:]}"
    after = freeze(python)
    for name in KEEP:
        assert after[name] == before[name], f"{chapter}'s set-up changed Colab's {name}: {before[name]} -> {after[name]}"
    nb = json.loads((folder / "executed.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    text = "\n".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert "wmlib installed from file://" in text, "the set-up cell did not install wmlib"
    assert "wmlib profile: smoke" in text
    assert not [o for o in outputs if o["output_type"] == "error"]
    stderr = "\n".join("".join(o.get("text", "")) for o in outputs if o.get("name") == "stderr")
    assert "widget" not in stderr.lower(), f"{chapter}: a widget error on ipywidgets 7.7:\n{stderr[-2000:]}"
    assert (folder / "world-models-book" / "pretrained").is_dir(), "the set-up cell did not clone the repository"
    assert not (folder / "pretrained").exists()
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CI_CHAPTERS)
def test_a_chapter_runs_alone_on_a_simulated_colab(colab_runtime, chapter, tmp_path):
    nb = run_chapter(colab_runtime, chapter, tmp_path)
    if chapter != "07_c_carracing":  # the Doom chapters print where their weights are: the set-up cell's clone
        assert "weights: world-models-book/pretrained/doom" in json.dumps(nb)


@pytest.mark.colab_full
@pytest.mark.parametrize("chapter", [c for c in ALL_CHAPTERS if c not in CI_CHAPTERS])
def test_every_other_chapter_runs_alone_on_a_simulated_colab(colab_runtime, chapter, tmp_path):
    run_chapter(colab_runtime, chapter, tmp_path)
