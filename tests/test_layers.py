"""The core's layout is its manual: a few layer packages, each importing only the layers below it, and no circles."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

CORE = ROOT / "cytoauto_core"
PACKAGE = "cytoauto_core"


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def _layers() -> list[str]:
    """The layer order the core's own docstring states, lowest first."""
    match = re.search(r"Layers, each importing only those before it: ([\w, ]+)\.", _docstring(CORE / "__init__.py"))
    assert match, "cytoauto_core/__init__.py names its layers"
    return [name.strip() for name in match.group(1).split(",")]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that `name` imports, at the top or inside a function (both run at some point)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & modules.keys()
            found |= submodules or ({target} & modules.keys())
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & modules.keys()
    return found - {name}


def _layer_of(module: str) -> str | None:
    """The layer a module belongs to; None for the package itself and __main__, which sit above every layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None


def test_the_core_has_no_module_outside_a_layer():
    top = sorted(p.name for p in CORE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
    packages = sorted(p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert packages == sorted(_layers())


def test_every_package_says_its_job_and_the_layers_it_may_import():
    """A layer may import the layers below it; a package inside a layer also the rest of its own layer."""
    layers = _layers()
    for init in sorted(CORE.glob("*/**/__init__.py")):
        package = init.parent.relative_to(CORE)
        doc = _docstring(init)
        job, _, rest = doc.partition("\n\n")
        assert len(job) > 40, f"{package}/__init__.py says what it holds"
        match = re.search(r"May import: ([\w ,]+)\.", rest)
        assert match, f"{package}/__init__.py says which layers it may import"
        allowed = [] if match.group(1) == "nothing of ours" else [s.strip() for s in match.group(1).split(",")]
        below = layers[: layers.index(package.parts[0])]
        expected = below if len(package.parts) == 1 else below + [package.parts[0]]
        assert allowed == expected, f"{package} may import {expected}"


def test_no_import_goes_up_a_layer():
    layers = _layers()
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        own = _layer_of(name)
        if own is None:
            continue
        for target in _imports(name, path, modules):
            theirs = _layer_of(target)
            if theirs is None or layers.index(theirs) > layers.index(own):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports up a layer: " + ", ".join(sorted(wrong))


def test_no_import_goes_round_a_circle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert not circles, f"import circles: {circles}"
