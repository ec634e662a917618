"""The package's layout rules, read from its source with ``ast`` (nothing is imported):

- no import cycle between flowdec's modules, counting imports inside functions too (not
  those under ``if TYPE_CHECKING:``, which never run);
- argparse only in the command lines (``flowdec.cli``, ``flowdec.__main__``, the training
  scripts run as ``python -m flowdec.train.X`` and the options they share);
- no library module imports the CLI, and none imports another module's private names;
- the layers below the fronts import only their own or lower layers (:data:`LAYERS`);
- inference needs no PyTorch: torch only in ``flowdec.train``, and inside the functions of
  ``flowdec.evaluation`` that need it (FAD's embedding).

"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "flowdec"
ROOT = PACKAGE.parent

LAYERS = ("flowdec.dsp", "flowdec.format", "flowdec.model", "flowdec.audio", "flowdec.pipeline")
"""The packages below the fronts (codec, stream, effect, files, live, serve, postfilter, cli),
lowest first (docs/architecture.md). flowdec.errors and the C++ core sit below them all."""

# The training scripts' shared command-line options (run options, DDP set-up).
TRAINING_OPTIONS = {"flowdec.train.loop"}


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)      # flowdec modules it imports
    names: set[str] = field(default_factory=set)        # "module.name" it imports from them
    argparse: bool = False
    main_guard: bool = False
    torch: str = ""            # "module" (imported at import time), "function", or ""


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _scan() -> dict[str, Module]:
    paths = {_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    compiled = {_name(p) for p in PACKAGE.rglob("*.pyi")}  # e.g. flowdec._core
    mods: dict[str, Module] = {}
    for name, path in paths.items():
        m = Module(name, path)
        tree = ast.parse(path.read_text(), str(path))
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        at_import = {id(n) for n in ast.walk(tree) if not isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))}
        for func in (n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            at_import -= {id(n) for n in ast.walk(func)}
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # for the type checker only: never runs
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                roots = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if not node.level else []
                if any(r == "torch" or r.startswith("torch.") for r in roots):
                    m.torch = "module" if id(node) in at_import else m.torch or "function"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    m.argparse |= alias.name == "argparse"
                    if alias.name in paths:
                        m.imports.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                m.argparse |= source == "argparse"
                if source not in paths:
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in paths:             # `from . import module`
                        m.imports.add(sub)
                    elif sub not in compiled:    # a name defined in `source`
                        m.imports.add(source)
                        m.names.add(sub)
            elif isinstance(node, ast.If) and ast.unparse(node.test) in (
                    "__name__ == '__main__'", '__name__ == "__main__"'):
                m.main_guard = True
        m.imports.discard(name)
        mods[name] = m
    return mods


MODULES = _scan()


def _is_cli(name: str) -> bool:
    return name in ("flowdec.cli", "flowdec.__main__") or name.startswith("flowdec.cli.")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_the_package() -> None:
    assert {"flowdec", "flowdec.codec", "flowdec.train.export"} <= set(MODULES)
    assert "flowdec.train.codec_model" in MODULES["flowdec.train.export"].imports
    assert MODULES["flowdec.train.export"].main_guard


def test_the_scan_skips_type_checking_imports(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "flowdec"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .b import B\n")
    (pkg / "b.py").write_text("def f():\n    from .a import A\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    mods = _scan()
    assert mods["flowdec.a"].imports == set() and mods["flowdec.b"].imports == {"flowdec.a"}


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = {name: m.imports for name, m in MODULES.items()}
    cycles = _cycles(graph)
    described = ["; ".join(f"{a} -> {sorted(graph[a] & set(c))}" for a in c) for c in cycles]
    assert not cycles, "import cycles: " + " | ".join(described)


def _argparse_allowed(m: Module) -> bool:
    if _is_cli(m.name) or m.name in TRAINING_OPTIONS:
        return True
    return m.name.startswith("flowdec.train.") and m.main_guard  # python -m flowdec.train.X


def test_inference_needs_no_torch() -> None:
    assert MODULES["flowdec.train.export"].torch == "module"  # the scan sees torch
    wrong = {n: m.torch for n, m in MODULES.items() if m.torch and not (
        n.startswith("flowdec.train.") or
        (n.startswith("flowdec.evaluation.") and m.torch == "function"))}
    assert not wrong, f"torch imported outside training: {wrong}"


@pytest.mark.parametrize("rule", ["argparse", "cli", "private"])
def test_layer_rules(rule: str) -> None:
    """Only the command lines parse arguments; no library module imports the CLI; no module
    imports another's private names."""
    breaking: set[object]
    if rule == "argparse":
        breaking = {n for n, m in MODULES.items() if m.argparse and not _argparse_allowed(m)}
    elif rule == "cli":
        breaking = {n for n, m in MODULES.items()
                    if not _is_cli(n) and any(_is_cli(i) for i in m.imports)}
    else:
        breaking = set()
        for n, m in MODULES.items():
            for full in m.names:
                source, name = full.rsplit(".", 1)
                if name.startswith("_") and not name.startswith("__") and \
                        not source.startswith(n + ".") and source != n:
                    breaking.add((n, full))
    assert not breaking, f"{rule} rule broken by {sorted(map(str, breaking))}"


def _layer(name: str) -> int | None:
    """Index of the layer ``name`` belongs to; -1 for the base (errors, the C++ core, the
    package itself); None for fronts, cli, evaluation and train."""
    if name in ("flowdec", "flowdec.errors", "flowdec._core"):
        return -1
    for i, layer in enumerate(LAYERS):
        if name == layer or name.startswith(layer + "."):
            return i
    return None


def test_layers_import_only_their_own_or_lower_layers() -> None:
    assert all(any(n == x or n.startswith(x + ".") for n in MODULES) for x in LAYERS)
    upward = []
    for n, m in MODULES.items():
        mine = _layer(n)
        if mine is None or mine < 0:
            continue
        for i in m.imports:
            theirs = _layer(i)
            if theirs is None or theirs > mine:
                upward.append(f"{n} -> {i}")
    assert not upward, f"imports from a higher layer or a front: {sorted(upward)}"
