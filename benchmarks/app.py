"""How fast the app feels on a long document: from the Summarize button to all charts drawn, and
the redraw after changing the layer, the heads or the tab (goal: under 300 ms).

Measured with Streamlit's AppTest (the time of `at.run()` after a change: the whole script rerun,
the views' numbers and the figures, without the browser), and optionally in headless Chromium
(`--browser`: the time until the page is idle again with its charts drawn).

    python benchmarks/app.py                 # 4,000 tokens, AppTest
    python benchmarks/app.py --browser       # and in the browser (needs /usr/bin/chromium)

Uses the embedded demo model; ledviz.localserver runs the server for the browser.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from ledviz.cli import find_app
from ledviz.localserver import CHROMIUM, IDLE, LocalApp

os.environ.setdefault("HF_HUB_OFFLINE", "1")
APP = str(find_app())

from common import sample_text  # noqa: E402  (benchmarks/common.py, beside this script)

GOAL_MS = 300


def document_of(tokens: int) -> str:
    """A document of exactly `tokens` tokens (special tokens included) for the app's model."""
    from ledviz import pipeline

    return sample_text(pipeline.load_model(), tokens)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def apptest(tokens: int, repeat: int) -> list[tuple[str, float, str]]:
    from streamlit.testing.v1 import AppTest

    rows: list[tuple[str, float, str]] = []
    at = AppTest.from_file(APP, default_timeout=600)
    rows.append(("start the app (load the model)", timed(at.run), ""))
    text = document_of(tokens)
    at.button_group(key="doc.source").set_value("Paste").run()
    at.text_area(key="doc.pasted").set_value(text)
    rows.append((f"paste a {tokens:,}-token document (tokenize, draw)", timed(at.run), ""))
    ms = timed(at.button(key="summarize.run").click().run)
    from pages.running import server

    result = server().results.get(at.session_state["summarize.result"])
    assert not at.exception, at.exception
    n_charts = len(at.get("plotly_chart"))
    t = result.timings
    rows.append(("Summarize → all charts drawn", ms,
                 f"{result.document.n_tokens:,} tokens, {len(result.output_ids) - 1} generated, {n_charts} charts; "
                 f"encode {t['encode_s'] * 1000:.0f} ms, generate {t['generate_s'] * 1000:.0f} ms, "
                 f"trace {t['trace_s'] * 1000:.0f} ms"))

    layer = lambda v: at.sidebar.selectbox(key="view.layer").set_value(v)  # noqa: E731
    heads = lambda v: at.sidebar.button_group(key="view.heads_mode").set_value(v)  # noqa: E731
    head = lambda v: at.sidebar.selectbox(key="view.head").set_value(v)  # noqa: E731
    n_layers = len(result.layers)

    def tab(name):
        at.session_state["summarize.views.tab"] = name

    changes = [
        ("layer → 0", lambda: layer(0)),
        (f"layer → {n_layers - 1}", lambda: layer(n_layers - 1)),
        ("layer → all layers", lambda: layer(-1)),
        ("heads → one (head 0)", lambda: heads("one")),
        ("head → 1", lambda: head(1)),
        ("heads → all", lambda: heads("all")),
        ("combine → max", lambda: at.sidebar.radio(key="view.reduce").set_value("max")),
        ("combine → mean", lambda: at.sidebar.radio(key="view.reduce").set_value("mean")),
        ("tab → Text", lambda: tab("Text")),
        ("tab → Heads", lambda: tab("Heads")),
        ("tab → Global tokens", lambda: tab("Global tokens")),
        ("tab → Cross-attention", lambda: tab("Cross-attention")),
        ("tab → Map", lambda: tab("Map")),
    ]
    first: dict[str, float] = {}
    again: dict[str, list[float]] = {name: [] for name, _ in changes}
    for r in range(repeat + 1):
        for name, change in changes:
            change()
            ms = timed(at.run)
            assert not at.exception, (name, at.exception)
            if r == 0:
                first[name] = ms
            else:
                again[name].append(ms)
    for name, _ in changes:
        rows.append((f"redraw: {name}", first[name],
                     f"first time; again (cached) median {statistics.median(again[name]):.0f} ms" if again[name] else ""))
    return rows


def browser(tokens_title: str) -> list[tuple[str, float, str]]:
    """The same in headless Chromium against `streamlit run app.py`, on a bundled sample."""
    import tempfile

    from playwright.sync_api import sync_playwright

    rows = []
    with LocalApp() as app:
        base = app.url
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1500, "height": 1400},
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = ctx.new_page()

            # the page's own clock: when the script state and the DOM last changed
            watch = """() => {
                window.__lv = {last: performance.now(), idle: performance.now()};
                const app = document.querySelector("[data-testid='stApp']");
                new MutationObserver(() => { window.__lv.last = performance.now(); })
                    .observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
                new MutationObserver(() => {
                    if (app.getAttribute('data-test-script-state') === 'notRunning') window.__lv.idle = performance.now();
                }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
            }"""

            def settle(start_js: float, charts: bool = True, quiet_ms: int = 1500) -> float:
                """Milliseconds from `start_js` (performance.now() at the click) until the script was
                idle and the page stopped changing (no DOM mutation for quiet_ms)."""
                page.wait_for_timeout(200)
                page.wait_for_selector(IDLE, timeout=600_000)
                if charts:
                    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
                page.wait_for_function(f"performance.now() - window.__lv.last > {quiet_ms}", timeout=600_000,
                                       polling=100)
                last, idle_at = page.evaluate("[window.__lv.last, window.__lv.idle]")
                settled.append(idle_at - start_js)  # when the script run ended, as the page saw it
                return max(last, idle_at) - start_js

            settled: list[float] = []

            def now() -> float:
                return page.evaluate("performance.now()")

            t = time.perf_counter()
            page.goto(base + "/")
            page.wait_for_selector(IDLE, timeout=600_000)
            page.evaluate(watch)
            page.wait_for_function("performance.now() - window.__lv.last > 1500", timeout=600_000, polling=100)
            rows.append(("browser: open the app", (time.perf_counter() - t) * 1000 - 1500, "until idle"))
            page.locator("[data-testid='stSelectbox']").filter(has_text="Sample document").click()
            page.get_by_role("option", name=tokens_title).click()
            settle(now(), charts=False)
            t = now()
            page.get_by_role("button", name="Summarize", exact=True).click()
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=600_000)
            rows.append((f"browser: Summarize → all charts ({tokens_title})", settle(t), "until the page is still"))
            for option in ["Layer 0", "Layer 1", "All layers", "Layer 0", "All layers"]:
                page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").filter(
                    has_text="Encoder layer").click()
                t = now()
                page.get_by_role("option", name=option, exact=True).click()
                ms = settle(t)
                rows.append((f"browser: layer → {option}", ms, f"script done at {settled[-1]:.0f} ms, then drawing"))
            ctx.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=2, help="revisits of each change after the first")
    parser.add_argument("--browser", action="store_true", help="also measure in headless Chromium")
    args = parser.parse_args()
    import torch

    from ledviz import pipeline

    print(f"model: {pipeline.default_model_dir()} · torch threads {torch.get_num_threads()} · "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = apptest(args.tokens, args.repeat)
    if args.browser:
        rows += browser("Expedition report (about 4K tokens)")
    width = max(len(r[0]) for r in rows)
    print(f"\n{'step':<{width}}  {'ms':>8}  notes")
    print("-" * (width + 60))
    for name, ms, note in rows:
        flag = " *" if name.startswith(("redraw", "browser: layer")) and ms > GOAL_MS else ""
        print(f"{name:<{width}}  {ms:>8.0f}{flag:2}  {note}")
    print(f"\n* above the {GOAL_MS} ms goal")


if __name__ == "__main__":
    main()
