"""The chapters import only wmlib's public API: names in `wmlib.__all__` or `wmlib.book.__all__`, never a
submodule (`from wmlib.vae import ...`, `import wmlib.book.doom`), so that what a reader sees imported is
what wmlib promises to keep."""
import ast
import json
from pathlib import Path

import pytest

import wmlib
import wmlib.book

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
PUBLIC = {"wmlib": set(wmlib.__all__), "wmlib.book": set(wmlib.book.__all__)}


def code_of(cell_source: str) -> str:
    """A code cell as Python, as IPython runs it (`!shell` and `%magic` lines become function calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def bad_imports(source: str) -> list[str]:
    """What a piece of chapter code imports from wmlib that is not public, one line per problem."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("wmlib.") and alias.name != "wmlib.book":
                    problems.append(f"import {alias.name}: a submodule; import names from wmlib or wmlib.book")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "wmlib":
            if node.module not in PUBLIC:
                problems.append(f"from {node.module} import ...: a submodule; import from wmlib or wmlib.book")
                continue
            for alias in node.names:
                if alias.name not in PUBLIC[node.module]:
                    problems.append(f"from {node.module} import {alias.name}: not in {node.module}.__all__")
    return problems


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_imports_only_public_names(chapter):
    cells = [c for c in json.loads(chapter.read_text())["cells"] if c["cell_type"] == "code"]
    problems = []
    for i, cell in enumerate(cells):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        problems += [f"code cell {i}: {p}" for p in bad_imports(code_of(source))]
    assert not problems, f"{chapter.name}:\n" + "\n".join(problems)


def test_the_book_has_its_chapters():
    assert len(CHAPTERS) == 10


@pytest.mark.parametrize("module", [wmlib, wmlib.book], ids=["wmlib", "wmlib.book"])
def test_every_public_name_exists_and_is_public(module):
    assert len(module.__all__) == len(set(module.__all__)), "a name is listed twice"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module.__name__}.__all__ lists names it does not define: {missing}"
    assert not [name for name in module.__all__ if name.startswith("_")]


def test_the_check_catches_private_imports():
    assert bad_imports("from wmlib import ConvVAE, get_config\nfrom wmlib.book import setup\nimport wmlib") == []
    assert bad_imports("from wmlib.vae import ConvVAE") == [
        "from wmlib.vae import ...: a submodule; import from wmlib or wmlib.book"]
    assert bad_imports("from wmlib.book import book_run_config, BOOK_SIZES") == [
        "from wmlib.book import BOOK_SIZES: not in wmlib.book.__all__"]
    assert bad_imports("from wmlib import train_vae, sample_windows") == [
        "from wmlib import sample_windows: not in wmlib.__all__"]
    assert len(bad_imports("import wmlib.run.cli\nimport wmlib.book.doom as d")) == 2
    assert bad_imports(code_of("!pip install wmlib\nfrom wmlib.run.cli import main")) != []
