"""Every chapter of the book runs top to bottom on the smoke profile, and is committed without outputs.

The chapters are executed once, by the book build that tests/test_book.py checks in Chromium (the
`book_build` fixture in conftest.py); each test here reads its chapter's executed copy and the
build log, and fails with the failing cell and its traceback.
"""
import os
import re

import nbformat
import pytest

from .conftest import CHAPTERS

# A chapter must run well under a minute on smoke (CI executes every chapter on a 2-core CPU and
# must finish in minutes); twice that fails its test in CI, which has the machine to itself (a
# local run on a busy machine only reports the times, at the end of pytest's output).
SMOKE_BUDGET_S = 120


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_notebook_committed_without_outputs(chapter):
    nb = nbformat.read(chapter, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{chapter.name}: code cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_notebook_runs(chapter, book_build):
    error = book_build.execution_error(chapter)
    if error:
        pytest.fail(f"{chapter.name} fails on the smoke profile.\n{error}", pytrace=False)

    # Sphinx's warnings about a chapter are bugs in it: a glue key that no cell defines, a bad
    # cross-reference, a figure that cannot be read.
    warnings = [line for line in book_build.log_lines(chapter) if re.search(r"\bWARNING:", line)]
    if warnings:
        pytest.fail(f"{chapter.name}: the book build warns:\n" + "\n".join(warnings), pytrace=False)

    secs = book_build.execution_seconds(chapter)
    assert secs is not None, f"{chapter.name}: the build log does not say how long it ran"
    if os.environ.get("CI"):
        assert secs <= SMOKE_BUDGET_S, (f"{chapter.name} took {secs:.0f} s on the smoke profile (budget "
                                        f"{SMOKE_BUDGET_S} s): shrink its smoke sizes")
