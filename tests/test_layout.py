"""The import graph: no cycles, lower layers never import upper ones, and the
top-level packages import one way (auditor <- exporters <- tinyworld <- benchmarks).

Every import of the project's own modules counts, module-level or inside a
function (a function-level import hides a cycle, it does not remove it);
imports under `if TYPE_CHECKING:` do not run and are left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("auditor", "exporters")
# Top-level packages, lower first: each may import only those before it. The one
# exception: the CLI's export-onnx command runs the exporter (imported inside it).
TOP = ("auditor", "exporters", "tinyworld", "benchmarks")
ALLOWED_UP = {("auditor.cli", "exporters")}
# Lower first; a module may import its own layer or any layer below it.
LAYERS = (
    ("auditor.errors", "auditor.fileio", "auditor.causes", "auditor.gate", "auditor.preflight",
     "auditor.console"),
    ("auditor.analysis",),
    ("auditor.detectors",),
    ("auditor.config",),
    ("auditor.data", "auditor.models", "auditor.features"),
    ("auditor.extract", "auditor.verdict", "auditor.evidence"),
    ("exporters",),
    ("auditor.report",),
    ("auditor.bundle",),
    ("auditor.evaluate", "auditor.verify"),
    ("auditor.pipeline",),
    ("auditor.cli",),
)


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".")
        base = base[:-1]  # the module's package (for __init__, the package itself)
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" for a in node.names] + [target]


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (module names without `__init__`)."""
    files = {_module(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    names = {m.removesuffix(".__init__") for m in files}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                candidates = _resolve(module, node)
            else:
                continue
            for c in candidates:
                while c and c not in names:
                    c = c.rpartition(".")[0]
                if c:
                    deps.add(c)
        me = module.removesuffix(".__init__")
        deps.discard(me)
        graph[me] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> int:
    if module == "auditor":  # the package's __init__: its version string only
        return 0
    for k, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return k
    raise AssertionError(f"{module}: not in any layer of tests/test_layout.py; add it")


def _package(module: str) -> str:
    return module if module.count(".") < 1 else ".".join(module.split(".")[:2])


def test_no_import_cycles_between_packages_or_modules():
    graph = import_graph()
    assert cycles(graph) == []
    packages: dict[str, set[str]] = {}
    for m, deps in graph.items():
        packages.setdefault(_package(m), set()).update(_package(d) for d in deps
                                                       if _package(d) != _package(m))
    assert cycles(packages) == []


def test_no_upward_imports():
    upward = [f"{m} -> {d}" for m, deps in import_graph().items() for d in deps if _layer(d) > _layer(m)
              and (m, d.split(".")[0]) not in ALLOWED_UP]
    assert upward == []


def test_top_level_packages_import_one_way():
    """The runtime (auditor) never needs the exporter, the test and benchmark
    worlds (tinyworld), or the benchmarks; the exporter never needs tinyworld."""
    top = {m: TOP.index(m.split(".")[0]) for m in import_graph(TOP)}
    upward = sorted(f"{m} -> {d}" for m, deps in import_graph(TOP).items() for d in deps
                    if top[d] > top[m] and (m, d.split(".")[0]) not in ALLOWED_UP)
    assert upward == []


def test_the_wheel_ships_the_runtime_and_the_exporter_only():
    """tinyworld/ (test and benchmark worlds) and benchmarks/ stay in the repository."""
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["auditor", "exporters"]


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
