"""Which mlrisk source files a script or module runs: the import closure, read from the source (AST),
never by importing it.

One walker for the two places that must know what code produces a result: the stages' ``deps`` in
dvc.yaml (``tests/test_dvc_deps.py`` checks they are exactly the files each stage imports) and the
walk-forward fold cache's code fingerprint (:func:`mlrisk.evaluation.fold.code_fingerprint`).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "mlrisk"
SRC = Path(__file__).resolve().parents[1]  # the folder that holds the package


def _module_file(name: str, src: Path) -> Path | None:
    base = src / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at module level or inside functions (lazy ones run too), except those
    under ``if TYPE_CHECKING:`` (annotations only: they never run)."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(path: Path, src: Path) -> set[str]:
    """The mlrisk modules ``path`` imports (``from a import b`` names a.b too when b is a module)."""
    out: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif node.module and node.module.split(".")[0] == PACKAGE and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}", src)}
    return out


def _is_code(f: Path) -> bool:
    """False for a package ``__init__.py`` that holds only its docstring (nothing that can change a result)."""
    body = ast.parse(f.read_text()).body
    return not (f.name == "__init__.py" and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body))


def imported_files(path: Path, src: Path = SRC) -> set[Path]:
    """The mlrisk source files under ``src`` that running ``path`` (a stage script or a module) executes:
    every module it imports, directly or through other mlrisk modules, at module level or inside a
    function, with the ``__init__.py`` of each package on the way (importing a.b.c runs a and a.b
    first). Left out: imports under ``if TYPE_CHECKING:`` and docstring-only ``__init__.py`` files.
    ``path`` itself is included when it lies under ``src``."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        f = todo.pop()
        for mod in _imports(f, src):
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):
                mf = _module_file(".".join(parts[:i]), src)
                if mf and mf not in seen:
                    seen.add(mf)
                    todo.append(mf)
    if path.resolve().is_relative_to(src.resolve()):
        seen.add(path)
    return {f for f in seen if _is_code(f)}
