"""wmlib's layout: imports only go down (book -> run -> studies -> core -> base), read from the source."""
import ast
from pathlib import Path

import pytest

WMLIB = Path(__file__).resolve().parents[1] / "wmlib"
BASE = {"errors", "checkpoint", "parallel"}
# The core in data-path order: what a reader reads top to bottom.
CORE = ["envs", "fast_carracing", "episodes", "policies", "collect", "vae", "train_vae", "series", "mdnrnn",
        "train_mdnrnn", "controller", "agent", "dream", "rollout", "cmaes"]
LAYERS = ["base", "core", "studies", "run", "book"]  # each may import only from its own layer and below


def layer_of(module: str) -> str:
    """'wmlib.run.cli' -> 'run'; 'wmlib.vae' -> 'core'; 'wmlib.errors' -> 'base'."""
    parts = module.split(".")[1:]
    if parts and parts[0] in ("run", "studies", "book"):
        return parts[0]
    if parts and parts[0] in BASE:
        return "base"
    if parts and parts[0] in CORE:
        return "core"
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add it to BASE, CORE or a subpackage")


def module_name(path: Path, root: Path = WMLIB) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    return ".".join(rel.parts)


def executed_imports(path: Path, root: Path = WMLIB) -> list[tuple[int, str]]:
    """(line, absolute module) of every wmlib import the file runs, at the top or inside functions; imports
    under `if TYPE_CHECKING:` are for annotations only and never run."""
    tree = ast.parse(path.read_text())
    package = module_name(path, root).rsplit(".", 1)[0]
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module] if node.module else []
            found += [(node.lineno, n) for n in names if n == "wmlib" or n.startswith("wmlib.")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("wmlib.")]
    return found


MODULES = sorted(p for p in WMLIB.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_only_go_down(path):
    me = layer_of(module_name(path))
    up = [(line, target) for line, target in executed_imports(path)
          if target != "wmlib" and LAYERS.index(layer_of(target)) > LAYERS.index(me)]
    assert not up, (f"{module_name(path)} ({me}) imports from a layer above it: "
                    + ", ".join(f"{t} (line {line})" for line, t in up) + "; move the shared piece down")


def test_the_core_is_listed_in_data_path_order():
    core = {p.stem for p in WMLIB.glob("*.py")} - BASE - {"__init__", "__main__"}
    assert core == set(CORE), f"modules of wmlib/ not in CORE or BASE: {sorted(core - set(CORE))}"


def test_the_check_sees_an_import_that_goes_up(tmp_path):
    bad = tmp_path / "wmlib" / "vae.py"
    bad.parent.mkdir()
    bad.write_text("from .errors import WMError\n\n\ndef f():\n    from .run.pipeline import open_run\n")
    imports = executed_imports(bad, root=tmp_path / "wmlib")
    assert [t for _, t in imports] == ["wmlib.errors", "wmlib.run.pipeline"]
    assert layer_of("wmlib.run.pipeline") == "run" and LAYERS.index("run") > LAYERS.index("core")
