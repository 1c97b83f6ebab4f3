"""The import rule stated on the docs' architecture page: imports run one way, from low modules to
packages to entry points (read from the source with `ast`, lazy imports inside functions included)."""

import ast

from conftest import ROOT

SRC = ROOT / "src" / "mlrisk"
LOW = {"errors", "times", "io", "hashing", "features", "strategy", "settings", "exit_codes", "logs", "code_deps", "version",
       "exchange_filters"}
# what each top-level module or package may import besides itself (docs/architecture.md, "The import rule")
ALLOWED = {
    **{m: LOW for m in LOW},
    "config": LOW, "exchange": LOW,
    "data": LOW | {"config", "exchange"},
    "model": LOW | {"config", "exchange", "data"},
    "backtest": LOW | {"config", "exchange", "data", "model"},
    "evaluation": LOW | {"config", "exchange", "data", "model", "backtest"},
    "report": LOW | {"config", "exchange", "data", "model", "backtest", "evaluation"},
    "live": LOW | {"config", "exchange", "data", "model", "backtest"},
}
ENTRY = {"stage", "cli", "docs_reference", "__init__", "__main__"}


def _imports() -> dict[str, set[str]]:
    """Top-level mlrisk module or package -> the other top-level mlrisk names it imports."""
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        top = path.relative_to(SRC).parts[0].removesuffix(".py")
        names = out.setdefault(top, set())
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for mod in mods:
                parts = mod.split(".")
                if parts[0] == "mlrisk" and len(parts) > 1 and parts[1] != top:
                    names.add(parts[1])
    return out


def test_imports_run_one_way():
    graph = _imports()
    assert {"data", "model", "live", "config", "features"} <= set(graph)
    bad = {top: sorted(names - ALLOWED[top]) for top, names in graph.items()
           if top not in ENTRY and names - ALLOWED.get(top, set())}
    assert not bad, f"imports against the rule in docs/architecture.md: {bad}"
    unknown = set(graph) - set(ALLOWED) - ENTRY
    assert not unknown, f"new top-level modules: place them in the rule (docs/architecture.md and this test): {unknown}"


def test_nothing_below_the_entry_points_imports_them():
    graph = _imports()
    for top, names in graph.items():
        if top not in ENTRY:
            assert not names & {"stage", "cli", "docs_reference"}, top


LIVE = SRC / "live"
# inside live/ (docs/architecture.md, "The import rule"): venue <- execution <- app, venue <- user_stream <- app;
# what each may not import
LIVE_FORBIDDEN = {
    "state": {"app", "cli", "loop", "step", "risk", "sim_account", "journal", "feeds", "execution", "venue", "model"},
    "venue": {"app", "cli", "loop", "step", "risk", "journal", "feeds", "execution", "user_stream"},
    "user_stream": {"app", "cli", "loop", "step", "risk", "journal", "feeds", "execution"},
    "execution": {"app", "cli", "loop", "journal", "feeds"},
    "risk": {"app", "cli", "loop", "step", "journal", "feeds", "execution", "venue"},
    "step": {"app", "cli", "loop", "journal", "feeds", "execution", "venue"},
    "feeds": {"app", "cli", "loop", "step", "execution", "venue"},
    "journal": {"app", "cli", "loop", "step", "execution", "venue", "feeds", "observe", "metrics", "alerts"},
    # the journal's observer and its sinks see only journal lines (never the bot, the exchange or the state)
    "observe": {"app", "cli", "loop", "step", "risk", "execution", "venue", "feeds", "journal", "state", "user_stream"},
    "metrics": {"app", "cli", "loop", "step", "risk", "execution", "venue", "feeds", "journal", "state", "user_stream",
                "alerts"},
    "alerts": {"app", "cli", "loop", "step", "risk", "execution", "venue", "feeds", "journal", "state", "user_stream",
               "metrics"},
    "loop": {"app", "cli", "execution", "venue"},
    "app": {"cli"},
}


def _live_imports() -> dict[str, set[str]]:
    """Module or package under live/ -> the other live modules or packages it imports."""
    out: dict[str, set[str]] = {}
    for path in LIVE.rglob("*.py"):
        top = path.relative_to(LIVE).parts[0].removesuffix(".py")
        names = out.setdefault(top, set())
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for mod in mods:
                parts = mod.split(".")
                if parts[:2] == ["mlrisk", "live"] and len(parts) > 2 and parts[2] != top:
                    names.add(parts[2])
    return out


def test_live_layers_import_one_way():
    graph = _live_imports()
    assert {"venue", "execution", "app", "state", "loop"} <= set(graph)
    bad = {m: sorted(graph.get(m, set()) & banned) for m, banned in LIVE_FORBIDDEN.items() if graph.get(m, set()) & banned}
    assert not bad, f"live/ imports against the rule in docs/architecture.md: {bad}"


def test_execution_sees_no_binance_specifics():
    """The venue owns Binance: execution/ calls no client method, names no error code, status map or
    request parameter (it consumes the venue's reports)."""
    import re

    words = re.compile(r"exchange\.call|exchange\.client|BINANCE_STATUS|ALGO_STATUS|or_none|-[0-9]{4}\b|"
                       r"newClientOrderId|origClientOrderId|clientAlgoId|reduceOnly|closePosition|workingType|"
                       r"executedQty|cumQuote|cummulativeQuoteQty|algoStatus|positionAmt")
    for path in (LIVE / "execution").glob("*.py"):
        code = ast.unparse(_without_docstrings(ast.parse(path.read_text())))
        assert not words.findall(code), f"{path.name}: Binance specifics outside live/venue.py: {words.findall(code)}"


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree
