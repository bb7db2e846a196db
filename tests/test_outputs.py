"""What the executed chapters show under their cells: no stray values, no paths of the build machine, no
clock times.

The book is the executed notebooks, so whatever a cell leaves under itself is printed in the book:
- a stray value: an `execute_result` (the value of a cell's last expression) that is plain text, such as
  `0.53`, `'text'`, `None`, `[...]` or `<Figure size ...>`, left by a trailing call whose result nobody
  meant to show. Results meant to be shown (a figure, HTML, Markdown, a widget) carry a richer type;
- a path of the machine that built the book (the repository's absolute path, /tmp/, /home/, /root/,
  /work/, /content/, site-packages), which means nothing to a reader and changes with the machine;
- a date or a clock time, which changes with every build.

scan(nb) finds them in one notebook; the unit tests below show that each check catches its case and
passes clean output, and test_chapter_outputs runs it over every chapter's executed copy from the smoke
build (the `book_build` fixture of conftest.py). To scan executed copies made elsewhere:

    python -m tests.test_outputs /tmp/exec/default/*.ipynb
"""
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from .conftest import CHAPTERS, ROOT

# An execute_result holding any of these was meant to be shown.
SHOWN = ("image/png", "image/jpeg", "image/svg+xml", "text/html", "text/markdown", "text/latex",
         "application/vnd.jupyter.widget-view+json", "application/javascript")
# Python's default repr of an object, or an empty figure: text that no reader is meant to see.
OBJECT_REPR = re.compile(r"<Figure size [^>]*>|<[\w.]+ object at 0x[0-9a-f]+>")
# A path of the build machine: the folders that only exist there (not a URL's /content/ or /work/).
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])/(?:tmp|home|root|work|content|Users)/[^\s'\")\]]*|site-packages")
MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*"
CLOCK = re.compile(
    r"(?<!\d)(?:19|20)\d\d-[01]\d-[0-3]\d(?!\d)"                          # 2026-12-03, 2026-12-03T14:03
    r"|(?<![\d:])\d{1,2}:[0-5]\d:[0-5]\d(?![\d:])"                          # 14:03:22
    r"|\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]* +" + MONTH + r" +\d{1,2}\b"  # Thu Dec  3
    r"|\b" + MONTH + r" +\d{1,2}, +(?:19|20)\d\d\b"                          # Dec 3, 2026
    r"|\b\d{1,2} +" + MONTH + r" +(?:19|20)\d\d\b")                          # 3 December 2026
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]+")  # embedded images and videos: not text


def output_texts(output) -> list:
    """(where, text) of every piece of text in one output: streams, and the text-like types of results,
    displays and glued values (myst-nb stores those as application/papermill.record/...)."""
    kind = output.get("output_type")
    if kind == "stream":
        return [(output.get("name", "stream"), output.get("text", ""))]
    texts = []
    for mime, value in (output.get("data") or {}).items():
        if mime.startswith("image/") or mime.endswith(("image/png", "image/jpeg")) or "json" in mime:
            continue
        text = "".join(value) if isinstance(value, list) else str(value)
        texts.append((f"{kind} {mime}", DATA_URI.sub("data:...", text)))
    return texts


def is_stray(output) -> bool:
    """A result or display that shows a bare value nobody meant to show."""
    data = output.get("data") or {}
    if output.get("output_type") == "execute_result":
        return not any(mime in data for mime in SHOWN)
    if output.get("output_type") == "display_data" and set(data) == {"text/plain"}:
        return bool(OBJECT_REPR.fullmatch(str(data["text/plain"]).strip()))  # e.g. an empty figure
    return False


def scan(nb, root: Path = ROOT) -> list:
    """Every offence in an executed notebook: (cell index, what, the offending text)."""
    found = []
    roots = {str(Path(root).resolve()), str(root)}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                continue  # a failing cell is test_notebooks.py's to report
            if is_stray(output):
                text = (output.get("data") or {}).get("text/plain", "")
                found.append((i, "stray value", "".join(text) if isinstance(text, list) else str(text)))
            for where, text in output_texts(output):
                for line in text.splitlines():
                    if any(r in line for r in roots) or MACHINE_PATH.search(line):
                        found.append((i, f"path of the build machine ({where})", line.strip()))
                    if CLOCK.search(line):
                        found.append((i, f"date or clock time ({where})", line.strip()))
    return found


def report(name: str, found: list) -> str:
    lines = [f"{name}: {len(found)} output(s) a reader should not see:"]
    for i, what, text in found:
        lines.append(f"  cell {i}: {what}: {text[:200]!r}")
    return "\n".join(lines)


# --- the scanner on small notebooks: each check catches its case, clean output passes ---


def notebook(*outputs, source="x = 1"):
    cell = new_code_cell(source, outputs=list(outputs), execution_count=1)
    return new_notebook(cells=[new_markdown_cell("# A chapter"), cell])


def result(data: dict):
    return new_output("execute_result", data=data, execution_count=1)


def display(data: dict, metadata=None):
    return new_output("display_data", data=data, metadata=metadata or {})


def stream(text: str, name="stdout"):
    return new_output("stream", name=name, text=text)


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def test_clean_outputs_pass():
    nb = notebook(
        stream("CarRacing: 100 steps, frames (101, 64, 64, 3) uint8, score so far 12.3\n"
               "seconds per stage: {'collect': 3.2}\nrun directory: runs/book-beyond-default-1a2b3c4d\n"
               "ratio 1:2, tqdm 00:05<00:10, step 12:30, arXiv:1803.10122, see https://example.org/content/x\n"),
        display({"image/png": PNG, "text/plain": "<Figure size 1000x370 with 2 Axes>"}),  # a figure, shown
        display({"text/markdown": "| a | b |\n|---|---|\n| 1 | 2 |", "text/plain": "<IPython.core.display.Markdown object>"}),
        result({"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"}),  # a cell ending in `fig`
        result({"text/html": "<video src='data:video/mp4;base64,AAAA/tmp/AAAA'></video>", "text/plain": "<Video>"}),
        result({"application/vnd.jupyter.widget-view+json": {"model_id": "ab12"}, "text/plain": "IntSlider(value=3)"}),
        display({"application/papermill.record/text/plain": "0.53"}, {"scrapbook": {"name": "x"}}),  # a glued value
    )
    assert scan(nb) == []


@pytest.mark.parametrize("text", ["0.53", "'text'", "None", "[1, 2, 3]", "<Figure size 640x480 with 0 Axes>",
                                  "(array([1., 2.]), tensor(3.))", "PosixPath('runs/x')"])
def test_stray_value_is_found(text):
    found = scan(notebook(result({"text/plain": text})))
    assert [(i, what) for i, what, _ in found] == [(1, "stray value")], found
    assert found[0][2] == text


def test_empty_figure_displayed_is_found():
    found = scan(notebook(display({"text/plain": "<Figure size 640x480 with 0 Axes>"})))
    assert [what for _, what, _ in found] == ["stray value"]


@pytest.mark.parametrize("text", [
    "run directory: /work/main/runs/book-beyond-default-1a2b3c4d",
    "episodes in /tmp/pytest-of-root/pytest-3/book0/runs",
    "saved to '/home/reader/world-models-book/runs/x'",
    "/root/.pyenv/versions/3.11.7/lib/python3.11/warnings.py:1: UserWarning: slow",
    "lib/python3.11/site-packages/torch/nn/modules/rnn.py:123: UserWarning",
    "Colab: /content/world-models-book/runs",
    f"{ROOT}/runs/book-doom-default",
])
def test_machine_path_is_found(text):
    for output in (stream(text + "\n"), stream(text, name="stderr"), display({"text/markdown": f"| {text} |"}),
                   display({"application/papermill.record/text/plain": repr(text)})):
        found = scan(notebook(output))
        assert found and all(what.startswith("path of the build machine") for _, what, _ in found), (output, found)


@pytest.mark.parametrize("text", ["written 2026-12-03", "2026-12-03T14:03:22Z", "took until 14:03:22",
                                  "Thu Dec  3 14:03 2026", "Dec 3, 2026", "3 December 2026"])
def test_clock_time_is_found(text):
    found = scan(notebook(stream(f"log: {text}\n")))
    assert found and all(what.startswith("date or clock time") for _, what, _ in found), found


def test_report_names_the_cell_and_the_text():
    nb = notebook(stream("ok\n"), result({"text/plain": "0.53"}), stream("in /tmp/x\n"))
    text = report("ch.ipynb", scan(nb))
    assert "cell 1: stray value: '0.53'" in text and "cell 1: path of the build machine (stdout): 'in /tmp/x'" in text


# --- every chapter, executed by the book build (smoke) ---


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_outputs(chapter, book_build):
    executed = book_build.executed(chapter)
    if not executed.exists():
        pytest.fail(f"{chapter.name} has no executed copy (test_notebooks.py::test_notebook_runs says why)",
                    pytrace=False)
    found = scan(nbformat.read(executed, as_version=4))
    if found:
        pytest.fail(report(chapter.name, found) + "\nEnd the cell with a statement (or `;`), print paths relative "
                    "to the repository, and print no clock times.", pytrace=False)


if __name__ == "__main__":  # python -m tests.test_outputs NOTEBOOK...: the same scan on executed copies
    bad = 0
    for path in sys.argv[1:]:
        found = scan(nbformat.read(path, as_version=4))
        bad += bool(found)
        print(report(Path(path).name, found) if found else f"{Path(path).name}: clean")
    sys.exit(1 if bad else 0)
