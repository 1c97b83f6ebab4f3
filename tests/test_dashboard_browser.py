"""The dashboard in a real browser: Debian's chromium (installed here when missing), headless, driven
by playwright (no browser download). Fails on any JavaScript console error, failed request or request
that leaves the file system; checks that every section's charts rendered, that the trades table sorts
on a header click and filters on typed words; saves a full-page screenshot under reports/."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_stage
from report_inputs import write_report_inputs

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "reports" / "dashboard-screenshot.png"
SECTIONS = ["summary", "data", "training", "evaluation", "strategy", "sweep", "holdout"]
# plotly charts expected per section: data has the feature distributions, evaluation the folds
CHARTED = {"data": 1, "training": 1, "evaluation": 3, "strategy": 5, "sweep": 3}


def _chromium() -> Path:
    if not CHROMIUM.exists():
        if shutil.which("apt-get") is None:
            pytest.fail("/usr/bin/chromium is missing and apt-get is not available: install chromium")
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], capture_output=True, text=True)
        if r.returncode != 0:  # the package lists may be missing on a fresh machine
            subprocess.run(["apt-get", "update"], capture_output=True)
            r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], capture_output=True, text=True)
        assert r.returncode == 0 and CHROMIUM.exists(), f"apt-get install chromium failed: {r.stderr[-1000:]}"
    return CHROMIUM


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dash")
    write_report_inputs(root, n_test=2000)
    r = run_stage("report", cwd=root)
    assert r.returncode == 0, r.stderr
    assert "reports/index.html" in r.stdout and "test accuracy" in r.stdout and "max drawdown" in r.stdout
    return root / "reports" / "index.html"


def test_dashboard_renders_in_chromium(dashboard: Path, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    problems: list[str] = []
    requests: list[str] = []
    t0 = time.perf_counter()
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(exe), headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu"], viewport={"width": 1366, "height": 768})
        blocked: list[str] = []
        # anything that would leave the file system is recorded and aborted before it goes out
        ctx.route(re.compile(r"^(https?|wss?|ftp)://"), lambda route: (blocked.append(route.request.url), route.abort()))
        page = ctx.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda req: problems.append(f"failed request: {req.url} {req.failure}"))
        page.on("request", lambda req: requests.append(req.url))
        page.goto(dashboard.as_uri(), wait_until="load")
        page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot')].length > 0 && "
                               "[...document.querySelectorAll('.js-plotly-plot')].every(el => el._fullLayout)")
        load_s = time.perf_counter() - t0

        for section in SECTIONS:
            assert page.locator(f"nav a[href='#{section}']").count() == 1, f"no navigation link to {section}"
            assert page.locator(f"section#{section}").is_visible()
        for section, n in CHARTED.items():
            sizes = page.eval_on_selector_all(
                f"section#{section} .js-plotly-plot",
                """els => els.map(el => {
                     const parts = [...el.querySelectorAll('svg.main-svg, canvas')].map(e => e.getBoundingClientRect());
                     const drawn = el.querySelectorAll('g.trace, g.hm, canvas').length;
                     return {id: el.id, w: Math.max(0, ...parts.map(r => r.width)), h: Math.max(0, ...parts.map(r => r.height)), drawn};
                   })""")
            assert len(sizes) >= n, f"{section}: {len(sizes)} charts, expected {n}"
            for s in sizes:
                assert s["w"] > 100 and s["h"] > 100 and s["drawn"] > 0, f"{section}: chart not rendered: {s}"

        # the trades table sorts on a header click (ascending, then descending) and filters
        pnl_col = page.eval_on_selector_all("#trades thead th", "ths => ths.map(t => t.textContent)").index("P&L")
        cells = f"#trades tbody tr td:nth-child({pnl_col + 1})"
        n_rows = page.locator("#trades tbody tr").count()
        assert n_rows > 10
        def values():
            return [float(t) for t in page.eval_on_selector_all(cells, "tds => tds.map(td => td.textContent)")]
        before = values()
        page.click(f"#trades thead th:nth-child({pnl_col + 1})")
        asc = values()
        assert asc == sorted(asc) and asc != before
        page.click(f"#trades thead th:nth-child({pnl_col + 1})")
        desc = values()
        assert desc == sorted(desc, reverse=True)
        page.fill("#trades input.filter", "short")
        sides = page.eval_on_selector_all("#trades tbody tr td:nth-child(3)", "tds => tds.map(td => td.textContent)")
        assert sides and set(sides) == {"short"} and len(sides) < n_rows

        # the issue-12 charts: one bar per fold for the model and each baseline, every feature's histograms
        folds = page.evaluate("document.getElementById('fig-folds').data.filter(t => t.type === 'bar')"
                              ".map(t => [t.name, t.x.length])")
        assert dict(folds) == {n: 4 for n in ("model", "majority", "persistence", "logistic", "gbt")}, folds
        assert page.locator("#fig-folds g.trace.bars").count() >= 1
        n_feats = page.evaluate("new Set(document.getElementById('fig-features').data.map(t => t.xaxis)).size")
        assert n_feats == 4
        assert page.locator("section#holdout .verdict.bad").filter(has_text="no longer an untouched estimate").count() == 1
        assert page.locator("section#sweep .box").filter(has_text="Honest selection").is_visible()

        # the log-scale toggle switches the equity axis
        page.locator("#fig-equity .updatemenu-button").filter(has_text="log").click()
        assert page.evaluate("document.getElementById('fig-equity').layout.yaxis.type") == "log"

        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.fill("#trades input.filter", "")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        ctx.close()

    assert not blocked, f"requests that leave the file system: {blocked}"
    assert not problems, "\n".join(problems)
    outside = [u for u in requests if not u.startswith(("file://", "data:", "blob:", "about:"))]
    assert not outside, f"requests that leave the file system: {outside}"
    assert SCREENSHOT.stat().st_size > 50_000
    print(f"the dashboard loaded in {load_s:.1f} s")  # no wall-clock assertion: it flakes on a loaded machine
