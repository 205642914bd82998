"""The package's import graph: no loop, and every import points to the same layer or a lower one
(docs/design.md draws the layers). Read from the source with ``ast``, imports inside functions included."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src"

# lowest first; a module belongs to the first layer whose prefix it has (package prefixes end with ".")
LAYERS = [
    ("base", ("jwins.errors", "jwins.registry", "jwins.config", "jwins.rng", "jwins.flat", "jwins.parallel",
              "jwins.timer", "jwins.rules", "jwins.jit")),
    ("wire", ("jwins.wire",)),
    ("parts", ("jwins.sharing", "jwins.engine", "jwins.training", "jwins.models", "jwins.data", "jwins.topology",
               "jwins.transforms", "jwins.dwt")),
    ("loop", ("jwins.experiment", "jwins.world", "jwins.communication", "jwins.network", "jwins.rundir",
              "jwins.launch", "jwins.checkpoint", "jwins.console")),
    ("face", ("jwins.cli", "jwins.api", "jwins.compare", "jwins.stats", "jwins.report", "jwins.plots",
              "jwins.__main__", "jwins")),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (SRC / "jwins").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in modules and t != name}
    return out


MODULES = _modules()
GRAPH = {name: _imports(name, path, MODULES) for name, path in MODULES.items()}


def _layer(name: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{name} is in no layer: add it to LAYERS (and to docs/design.md)")


def test_every_module_has_a_layer():
    for name in MODULES:
        _layer(name)


def test_the_import_graph_has_no_loop():
    """Depth-first search for a back edge; the loop found is printed whole."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(v: str) -> None:
        state[v] = 1
        path.append(v)
        for w in sorted(GRAPH[v]):
            if state.get(w) == 1:
                loop = path[path.index(w):] + [w]
                pytest.fail("import loop: " + " -> ".join(loop))
            if w not in state:
                visit(w)
        path.pop()
        state[v] = 2

    for v in sorted(GRAPH):
        if v not in state:
            visit(v)


def test_imports_point_down():
    upward = [f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
              for a, targets in GRAPH.items() for b in targets if _layer(b) > _layer(a)]
    assert not upward, "\n".join(upward)


def test_the_registry_and_config_stay_light():
    """Naming and validating parts imports none of them: `import jwins` and the CLI's start-up stay fast, and a
    config can be checked without torch."""
    assert GRAPH["jwins.registry"] <= {"jwins.errors"}
    assert GRAPH["jwins.config"] <= {"jwins.errors", "jwins.registry", "jwins.rules"}
    assert GRAPH["jwins.rules"] == set()
