"""Write every chapter's set-up cell (its first code cell) from one template and the project's URL.

    python scripts/install_cells.py           # rewrite the cells that differ from the template
    python scripts/install_cells.py --check   # exit 1 and name the chapters whose cell differs

The URL is pyproject.toml's [project.urls] Repository, the one place that names where the project
lives; _config.yml's repository and launch buttons carry the same URL (tests/test_colab.py checks the
three agree). The cell is what makes a chapter run alone on Colab: it brings the repository (wmlib and
the shipped weights in pretrained/) and installs wmlib without upgrading the runtime's torch, numpy or
ipywidgets. WMLIB_SOURCE points it at another source (a local clone or a git URL), which is how
tests/test_colab.py runs it outside Colab.
"""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
# The packages a Colab runtime already has and imports at start-up: pip must leave them as they are.
KEEP = ("torch", "numpy", "ipywidgets")

TEMPLATE = '''\
# Set-up. On Colab (or wherever WMLIB_SOURCE names a source) this brings the book's repository, wmlib and
# the shipped weights in pretrained/, into ./world-models-book and installs wmlib from it, leaving the
# runtime's {keep_words} as they are. In a clone of the repository it uses wmlib/ beside book/.
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

REPOSITORY = "{url}"
SOURCE = os.environ.get("WMLIB_SOURCE", "")  # install from a local clone (a folder) or another git URL instead
try:
    import google.colab  # noqa: F401  (only importable on Colab)
    ON_COLAB = True
except ImportError:
    ON_COLAB = False
if ON_COLAB or SOURCE:
    src = Path(SOURCE) if SOURCE and Path(SOURCE).is_dir() else Path("world-models-book")
    if not (src / "pyproject.toml").exists():
        !git clone --quiet --depth 1 {{SOURCE or REPOSITORY}} {{src}}
    have = {{d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions()}}
    keep = Path(tempfile.mkdtemp()) / "keep.txt"  # pip may install around these, never replace them
    keep.write_text("".join(f"{{name}}=={{have[name]}}\\n" for name in {keep} if name in have))
    %pip install --quiet swig
    %pip install --quiet --constraint {{keep}} --editable {{src}}
    if "wmlib" not in {{d.metadata["Name"].lower() for d in importlib.metadata.distributions()}}:
        raise RuntimeError(f"pip could not install wmlib from {{src}}: its messages above say why")
    sys.path.insert(0, str(src.resolve()))  # this kernel imports the clone now (pip's -e counts after a restart)
    print(f"wmlib installed from {{SOURCE or REPOSITORY}} ({{src}}), no restart needed; kept",
          ", ".join(keep.read_text().split()))
elif importlib.util.find_spec("wmlib") is None:
    sys.path.insert(0, str(Path.cwd().parent))  # a clone of the repository: wmlib/ is beside book/

from wmlib.book import setup
PROFILE, DEVICE = setup()'''


def repository_url(root: Path = ROOT) -> str:
    """pyproject.toml's [project.urls] Repository (read without tomllib, which Python 3.10 lacks)."""
    text = (root / "pyproject.toml").read_text()
    block = re.search(r"^\[project\.urls\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = block and re.search(r'^Repository\s*=\s*"([^"]+)"', block.group(1), re.M)
    if not found:
        raise SystemExit("pyproject.toml has no [project.urls] Repository = \"...\"")
    return found.group(1)


def install_cell(url: str) -> str:
    """The set-up cell's source for the project at `url`."""
    return TEMPLATE.format(url=url, keep=KEEP, keep_words=", ".join(KEEP[:-1]) + " and " + KEEP[-1])


def setup_cell(nb: dict) -> dict:
    """A chapter's set-up cell: its first code cell."""
    return next(c for c in nb["cells"] if c["cell_type"] == "code")


def out_of_date(url: str) -> list:
    """The chapters whose set-up cell is not install_cell(url)."""
    want = install_cell(url)
    return [p for p in CHAPTERS if "".join(setup_cell(json.loads(p.read_text()))["source"]) != want]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report the chapters whose cell differs")
    args = parser.parse_args(argv)
    url = repository_url()
    stale = out_of_date(url)
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)}: the set-up cell differs; run python scripts/install_cells.py")
        return 1 if stale else 0
    for p in stale:
        nb = json.loads(p.read_text())
        cell = setup_cell(nb)
        cell["source"] = install_cell(url).splitlines(keepends=True)
        # The HTML book shows what the cell prints (profile and device), not the install code
        cell.setdefault("metadata", {})["tags"] = sorted(set(cell["metadata"].get("tags", [])) | {"hide-input"})
        p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
