"""A classroom at once: N simulated users (default 30) each press Summarize on `streamlit run app.py`
at the same moment, plus one real browser; prints time to result (p50/p95), errors, how many
waiting users saw their place in the queue, and the server's peak memory (RSS of its process tree).

The simulated users are websocket clients speaking Streamlit's own protocol, as its frontend does:
they connect to /_stcore/stream, send a BackMsg `rerun_script` with the widget states (the
document, and a trigger for the Summarize button), and read the ForwardMsg deltas the server
streams back (the queue place, the running state, the result's facts line, errors). The browser
(playwright with /usr/bin/chromium) does the same by hand, for sanity; it renders on this same
machine, so its time is not a measure of the server.

    python benchmarks/load.py                         # 30 users + a browser, the embedded model
    python benchmarks/load.py --no-browser --users 10
    python benchmarks/load.py --led-base              # a random-weight LED-base-shaped checkpoint
                                                      # on 16,384-token documents (heavy: minutes)

Deployment settings go to the server as LEDVIZ_* environment variables (--workers, --queue-size,
--memory-budget-mb); see the README's "Deployment settings".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ledviz.localserver import LocalApp


PLACE = re.compile(r"Waiting: you are number (\d+) in the queue")
RUNNING = re.compile(r"Running: ")
RESULT = re.compile(r"\d[\d,]* input tokens · \d+ global · \d+ output tokens")  # the run's facts line
REFUSALS = ("server is busy", "would not fit in memory")
MARKERS = (b"Waiting: you are number", b"Running: ", b" output tokens", b"Something went wrong",
           *(r.encode() for r in REFUSALS))
LED_BASE_DIR = Path("/tmp/ledviz-led-base-random")


# ---------------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------------

def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class AppServer(LocalApp):
    """`streamlit run app.py` on a free port (ledviz.localserver), with its memory sampled every 0.2 s."""

    def __init__(self, env: dict[str, str]):
        self.log = open(f"/tmp/ledviz-load-{os.getpid()}.log", "wb")
        try:
            super().__init__(env=env, log=self.log)
        except (RuntimeError, TimeoutError) as e:
            raise SystemExit(f"the app did not start ({e}); see {self.log.name}")
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.wait(0.2):
            self.samples.append((time.perf_counter() - t0, tree_rss(self.proc.pid)))

    def rss_now(self) -> int:
        return tree_rss(self.proc.pid)

    @property
    def peak_rss(self) -> int:
        return max((r for _, r in self.samples), default=0)

    def stop(self) -> None:
        self._stop.set()
        super().stop()
        self.log.close()


# ---------------------------------------------------------------------------------------------
# a simulated user: Streamlit's websocket protocol
# ---------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    user: str
    seconds: float | None = None  # from the click to the result's facts line
    places: list[int] = field(default_factory=list)
    saw_running: bool = False
    refused: str | None = None
    error: str | None = None
    facts: str | None = None  # the run's facts line (model times)
    first_status: float | None = None  # seconds from the click to the first waiting/running state


def _texts(msg) -> list[tuple[str, str]]:
    """(kind, text) of what a ForwardMsg draws: element type and its visible strings."""
    if msg.WhichOneof("type") != "delta":
        return []
    delta = msg.delta
    if delta.WhichOneof("type") != "new_element":
        return []
    element = delta.new_element
    kind = element.WhichOneof("type")
    inner = getattr(element, kind)
    out = []
    for name in ("body", "label", "text", "message"):
        if hasattr(inner, name):
            value = getattr(inner, name)
            if isinstance(value, str) and value:
                out.append((kind, value))
    if kind == "alert":
        from streamlit.proto.Alert_pb2 import Alert

        out = [(f"alert.{Alert.Format.Name(inner.format).lower()}", t) for _, t in out]
    return out


class User:
    """One browser tab's worth of protocol: connect, run the page, fill in the document, click."""

    def __init__(self, base_url: str, name: str, text: str | None, max_new: int | None = None):
        self.ws_url = base_url.replace("http", "ws") + "/_stcore/stream"
        self.name = name
        self.text = text
        self.max_new = max_new
        self.widgets: dict[str, str] = {}  # user key -> widget id
        self.ws = None

    async def connect(self) -> None:
        import websockets

        self.ws = await websockets.connect(self.ws_url, subprotocols=["streamlit"], max_size=None,
                                           open_timeout=60, ping_interval=None)

    async def rerun(self, states: list) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = ""
        msg.rerun_script.widget_states.widgets.extend(states)
        await self.ws.send(msg.SerializeToString())

    async def messages(self, timeout: float, markers: tuple[bytes, ...] | None = None):
        """ForwardMsgs as they arrive; with `markers`, only those small enough to be a message or
        holding a marker are parsed (the figures are megabytes: parsing them all on this same
        machine would make the client, not the server, the slow part)."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise asyncio.TimeoutError
            data = await asyncio.wait_for(self.ws.recv(), left)
            if markers is not None and len(data) > 4096 and not any(m in data for m in markers):
                continue
            msg = ForwardMsg()
            msg.ParseFromString(data)
            yield msg

    async def run_to_end(self, states: list, timeout: float = 120) -> None:
        """Rerun the page and read until the script finished, collecting widget ids by key."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        await self.rerun(states)
        async for msg in self.messages(timeout):
            self._collect(msg)
            if msg.WhichOneof("type") == "script_finished" and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return

    def _collect(self, msg) -> None:
        if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            inner = getattr(element, element.WhichOneof("type"))
            wid = getattr(inner, "id", "")
            if isinstance(wid, str) and wid.startswith("$$ID-"):
                self.widgets[wid.split("-", 2)[2]] = wid

    def _states(self, click: bool) -> list:
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        states = []
        if self.text is not None:
            s = WidgetState(id=self.widgets["doc.source"])
            s.string_array_value.data.append("Paste")
            states.append(s)
            if "doc.pasted" in self.widgets:
                states.append(WidgetState(id=self.widgets["doc.pasted"], string_value=self.text))
        if self.max_new is not None and "summarize.max_new" in self.widgets:
            states.append(WidgetState(id=self.widgets["summarize.max_new"], int_value=self.max_new))
        if click:
            states.append(WidgetState(id=self.widgets["summarize.run"], trigger_value=True))
        return states

    async def prepare(self) -> None:
        await self.connect()
        await self.run_to_end([])
        if self.text is not None:
            await self.run_to_end(self._states(click=False))  # shows the paste box
        if self.text is not None or self.max_new is not None:
            await self.run_to_end(self._states(click=False))  # with the text (and length) in it

    async def summarize(self, timeout: float) -> Outcome:
        out = Outcome(self.name)
        t0 = time.perf_counter()
        await self.rerun(self._states(click=True))
        try:
            async for msg in self.messages(timeout, MARKERS):
                for kind, text in _texts(msg):
                    m = PLACE.search(text)
                    if m and (not out.places or out.places[-1] != int(m.group(1))):
                        out.places.append(int(m.group(1)))
                    if RUNNING.search(text):
                        out.saw_running = True
                    if kind == "alert.error":
                        if any(r in text for r in REFUSALS):
                            out.refused = text
                        else:
                            out.error = text
                    if kind == "exception":
                        out.error = text
                    if (m or RUNNING.search(text)) and out.first_status is None:
                        out.first_status = time.perf_counter() - t0
                    if RESULT.search(text):
                        out.seconds = time.perf_counter() - t0
                        out.facts = text
                if out.seconds is not None or out.error or out.refused:
                    break
        except asyncio.TimeoutError:
            out.error = f"no result within {timeout:.0f} s"
        except Exception as err:  # noqa: BLE001 - a benchmark reports, it does not stop
            out.error = f"{type(err).__name__}: {err}"
        finally:
            await self.ws.close()
        return out


# ---------------------------------------------------------------------------------------------
# the real browser
# ---------------------------------------------------------------------------------------------

def browser_user(base_url: str, text: str | None, go: threading.Event, result: dict, timeout: float,
                 shots: Path | None) -> None:
    """One headless Chromium: open the app, (paste the document,) wait for `go`, press Summarize."""
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(base_url, timeout=120_000)
            page.get_by_role("button", name="Summarize").wait_for(timeout=120_000)
            if text is not None:
                page.get_by_text("Paste", exact=True).click()
                page.get_by_label("Paste a document").fill(text)
                page.keyboard.press("Control+Enter")
                page.wait_for_timeout(3000)
            result["ready"] = True
            go.wait()
            page.wait_for_timeout(1500)  # behind the simulated users
            t0 = time.perf_counter()
            page.get_by_role("button", name="Summarize").click()
            deadline = time.perf_counter() + timeout
            place_shot = running_shot = False
            while time.perf_counter() < deadline:
                body = page.inner_text("body")
                m = PLACE.search(body)
                if m:
                    result.setdefault("places", []).append(int(m.group(1)))
                    if shots and not place_shot:
                        page.screenshot(path=str(shots / "load-waiting.png"))
                        place_shot = True
                if RUNNING.search(body) and shots and not running_shot:
                    page.screenshot(path=str(shots / "load-running.png"))
                    running_shot = True
                if RESULT.search(body):
                    result["seconds"] = time.perf_counter() - t0
                    break
                if any(r in body for r in REFUSALS):
                    result["refused"] = True
                    break
                page.wait_for_timeout(250)
            else:
                result["error"] = f"no result within {timeout:.0f} s"
            browser.close()
    except Exception as err:  # noqa: BLE001
        result["error"] = f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------------------------------------
# the LED-base-shaped checkpoint and its document
# ---------------------------------------------------------------------------------------------

def make_led_base(path: Path = LED_BASE_DIR) -> Path:
    """A random-weight checkpoint shaped like allenai/led-base-16384 (d_model 768, 6 + 6 layers,
    12 heads, window 1024, 16,384 positions, 50,265 tokens), saved in float16; the embedded
    model's tokenizer."""
    if (path / "config.json").exists():
        return path
    import torch

    from ledviz import LEDConfig, LEDForConditionalGeneration
    from ledviz.pipeline import default_model_dir

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = Path(default_model_dir())
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        if (src / name).exists():
            shutil.copy(src / name, tmp / name)
    torch.manual_seed(0)
    config = LEDConfig(vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6,
                       encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072,
                       decoder_ffn_dim=3072, attention_window=1024, max_encoder_position_embeddings=16384,
                       max_decoder_position_embeddings=1024, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                       decoder_start_token_id=2)
    LEDForConditionalGeneration(config).to(torch.float16).eval().save_pretrained(tmp)
    os.replace(tmp, path) if not path.exists() else shutil.rmtree(tmp)
    return path


def long_document(model_dir: Path, tokens: int) -> str:
    """Sample documents repeated until the text is `tokens` tokens long (special tokens included)."""
    from ledviz import pipeline
    from ledviz.demo.data import sample_documents
    from ledviz.tokenization import LEDTokenizerFast

    tok = LEDTokenizerFast.from_pretrained(str(model_dir))
    base = "\n\n".join(sample_documents().values())
    text = base
    while len(tok(text)["input_ids"]) < tokens:
        text += "\n\n" + base
    enc = tok(text, truncation=True, max_length=tokens, return_offsets_mapping=True)
    end = enc["offset_mapping"][tokens - 2][1]
    del pipeline
    return text[:end]


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def simulate(base_url: str, n: int, text: str | None, max_new: int | None, timeout: float,
                   go: threading.Event, browser_ready: dict | None) -> list[Outcome]:
    users = [User(base_url, f"user{i:02d}", text, max_new) for i in range(n)]
    # connect and draw the page for everyone first (a few at a time, as a class logging in)
    sem = asyncio.Semaphore(6)

    async def prep(u):
        async with sem:
            await u.prepare()

    await asyncio.gather(*(prep(u) for u in users))
    while browser_ready is not None and not browser_ready.get("ready") and not browser_ready.get("error"):
        await asyncio.sleep(0.2)
    go.set()
    return await asyncio.gather(*(u.summarize(timeout) for u in users))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--no-browser", action="store_true", help="simulated users only")
    ap.add_argument("--led-base", action="store_true", help="an LED-base-shaped random checkpoint, long documents")
    ap.add_argument("--tokens", type=int, default=16384, help="document length with --led-base")
    ap.add_argument("--max-new", type=int, default=None, help="summary tokens (the page's default otherwise)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--queue-size", type=int, default=None)
    ap.add_argument("--memory-budget-mb", type=float, default=None)
    ap.add_argument("--timeout", type=float, default=600, help="seconds a user waits for a result")
    ap.add_argument("--screenshots", type=Path, default=None, help="folder for the browser's screenshots")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args()

    env = {"HF_HUB_OFFLINE": "1"}
    for name, value in (("WORKERS", args.workers), ("QUEUE_SIZE", args.queue_size),
                        ("MEMORY_BUDGET_MB", args.memory_budget_mb)):
        if value is not None:
            env["LEDVIZ_" + name] = str(value)
    text = None
    if args.led_base:
        model_dir = make_led_base()
        env["LEDVIZ_MODEL"] = str(model_dir)
        text = long_document(model_dir, args.tokens)
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)

    server = AppServer(env)
    try:
        idle_rss = server.rss_now()
        go = threading.Event()
        browser_result: dict | None = None
        thread = None
        if not args.no_browser:
            browser_result = {}
            thread = threading.Thread(target=browser_user, daemon=True,
                                      args=(server.url, text, go, browser_result, args.timeout, args.screenshots))
            thread.start()
        t0 = time.perf_counter()
        outcomes = asyncio.run(simulate(server.url, args.users, text, args.max_new, args.timeout, go, browser_result))
        wall = time.perf_counter() - t0
        if thread is not None:
            thread.join(args.timeout + 60)
        report(args, server, idle_rss, outcomes, browser_result, wall)
    finally:
        server.stop()


def report(args, server: AppServer, idle_rss: int, outcomes: list[Outcome], browser: dict | None, wall: float) -> None:
    done = [o.seconds for o in outcomes if o.seconds is not None]
    errors = [o for o in outcomes if o.error]
    refused = [o for o in outcomes if o.refused]
    saw_place = [o for o in outcomes if o.places]
    # everyone who got a result waited, except those who found a worker free (one per worker)
    workers = args.workers or max(1, (os.cpu_count() or 1) // 4)
    should_wait = max(0, len(done) - workers)
    gb = 2**30
    figures = dict(
        users=len(outcomes), model="LED-base-shaped random weights" if args.led_base else "embedded demo model",
        tokens=args.tokens if args.led_base else None,
        results=len(done), errors=len(errors), refused=len(refused),
        p50_s=round(percentile(done, 0.5), 2), p95_s=round(percentile(done, 0.95), 2),
        max_s=round(max(done), 2) if done else None,
        saw_place=len(saw_place), should_wait=should_wait, saw_running=sum(o.saw_running for o in outcomes),
        peak_rss_gb=round(server.peak_rss / gb, 2), idle_rss_gb=round(idle_rss / gb, 2),
        wall_s=round(wall, 1), cores=os.cpu_count(), load_1min=round(os.getloadavg()[0], 2),
        browser=browser,
    )
    print(f"\n{figures['users']} simulated users, {figures['model']}"
          + (f", {args.tokens:,}-token documents" if args.led_base else ""))
    print(f"  results {len(done)}, errors {len(errors)}, refused {len(refused)}")
    if done:
        print(f"  time to result: p50 {figures['p50_s']:.1f} s, p95 {figures['p95_s']:.1f} s, "
              f"max {figures['max_s']:.1f} s (wall {wall:.1f} s)")
    print(f"  saw their place in the queue: {len(saw_place)} of the {should_wait} who had to wait "
          f"(most place updates one user saw: {max((len(o.places) for o in outcomes), default=0)}); "
          f"saw the running state: {figures['saw_running']}")
    print(f"  server memory (RSS of its process tree): idle {idle_rss / gb:.2f} GB, peak {server.peak_rss / gb:.2f} GB")
    print(f"  machine: {os.cpu_count()} cores, 1-minute load {os.getloadavg()[0]:.1f} at the end")
    facts = [o.facts for o in outcomes if o.facts]
    gen = [float(m.group(1)) for f in facts for m in [re.search(r"generate ([\d.]+) s", f)] if m]
    enc = [float(m.group(1)) for f in facts for m in [re.search(r"encode ([\d.]+) s", f)] if m]
    if gen:
        figures.update(median_encode_s=statistics.median(enc), median_generate_s=statistics.median(gen))
        print(f"  one run inside the server (median): encode {statistics.median(enc):.2f} s, "
              f"generate {statistics.median(gen):.2f} s")
    for o in errors[:5]:
        print(f"  error ({o.user}): {o.error[:200]}")
    for o in refused[:2]:
        print(f"  refused ({o.user}): {o.refused[:200]}")
    if browser is not None:
        print(f"  browser: {json.dumps(browser)}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
