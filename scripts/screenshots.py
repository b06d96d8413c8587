"""Take the README screenshots of the dashboard and the log viewer (1280 px wide).

    python scripts/screenshots.py [--out docs] [--settle SECONDS]

Starts the real `logcast serve` in a temporary folder with the demo's fake model servers
(examples/demo: a llama.cpp server that is ready and serving, a vLLM server that waited for
it, and a bigger llama.cpp model still loading), a uvicorn-like API and a worker that dies
of an out-of-memory error; lets them run for a minute so that the sparklines have a
history; opens Debian's Chromium through Playwright and writes `screenshot-dashboard.png`
(load bar, phases, tokens/s, CPU and memory, sparklines, why the worker died) and
`screenshot-viewer.png` (the model server's log, the lines its parser read marked).
Everything is stopped again at the end, by process group.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.util
from tests.util import CHROMIUM, CHROMIUM_ARGS

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"

API = r"""
import random, sys, time
G, Y, C, X = "\x1b[32m", "\x1b[33m", "\x1b[36m", "\x1b[0m"
print(f"{G}INFO{X}:     Started server process [4242]")
print(f"{G}INFO{X}:     Waiting for application startup.")
print(f"{G}INFO{X}:     Application startup complete.")
print(f"{G}INFO{X}:     Uvicorn running on {C}http://127.0.0.1:8000{X} (Press CTRL+C to quit)")
paths = ["/v1/models", "/v1/chat/completions", "/health", "/v1/embeddings"]
while True:
    p = random.choice(paths)
    code = random.choice([200, 200, 200, 200, 404, 200, 500]) if p != "/health" else 200
    colour = G if code < 400 else Y
    port = random.randint(40000, 60000)
    print(f'{G}INFO{X}:     127.0.0.1:{port} - "GET {p} HTTP/1.1" {colour}{code}{X}')
    if code == 500:
        print("ERROR:    Exception in ASGI application: upstream model timed out after 30.0s", file=sys.stderr)
    elif code == 404:
        print(f"{Y}WARNING{X}:  unknown route {p}")
    sys.stdout.flush()
    time.sleep(random.uniform(0.15, 0.5))
"""

WORKER = r"""
import sys, time
print("worker: loading the embedding model (bge-m3) on cuda:0", flush=True)
for batch in range(1, 9):
    time.sleep(0.4)
    print(f"worker: batch {batch}/64 embedded (512 documents)", flush=True)
print("WARNING worker: CUDA memory 21.8 GiB of 24 GiB in use", flush=True)
time.sleep(0.5)
print("ERROR torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB "
      "(GPU 0; 23.65 GiB total capacity; 21.80 GiB already allocated)", file=sys.stderr, flush=True)
print("ERROR worker: batch 9/64 failed, giving up", file=sys.stderr, flush=True)
sys.exit(1)
"""


def config() -> str:
    def proc(name: str, source: str | list[str], **opts: object) -> str:
        argv = (
            [sys.executable, "-u", *source]
            if isinstance(source, list)
            else [sys.executable, "-u", "-c", source]
        )
        lines = [f"[process.{name}]", f"command = {json.dumps(argv)}"]
        for key, value in opts.items():
            if isinstance(value, dict):  # a TOML inline table
                pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {pairs} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join(lines) + "\n"

    return "\n".join(
        [
            proc(
                "qwen3",
                [str(DEMO / "fake_llm.py"), "--load-seconds", "3"],
                ready={"log": "server is listening"},
                restart="on-failure",
                env={"CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": "hf_demo"},
            ),
            proc(
                "vllm",
                [str(DEMO / "fake_vllm.py"), "--shard-seconds", "0.4"],
                depends_on={"qwen3": "ready"},
                parse="vllm",
                restart="on-failure",
            ),
            proc("llama-70b", [str(DEMO / "fake_llm.py"), "--load-seconds", "200"], restart="on-failure"),
            proc("api", API, restart="always"),
            proc("worker", WORKER, restart="never"),
        ]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "docs",
        help="folder for the PNGs",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="seconds the demo runs before the dashboard's shot (sparklines)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "logcast.toml").write_text(textwrap.dedent(config()))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k not in ("LOGCAST_TOKEN", "LOGCAST_URL")}
        server = subprocess.Popen(
            [sys.executable, "-m", "logcast", "serve", "-c", "logcast.toml", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("logcast serve did not become healthy")
                time.sleep(0.1)
            shoot(url, args.out, args.settle, time.monotonic())
        finally:
            stop(server)
    return 0


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group (its children included)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(5)


def shoot(url: str, out: Path, settle: float, started: float) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
            page = context.new_page()
            # let the demo run for a while so counters and histories have something to show
            page.goto(url + "/logs.html?process=qwen3")
            expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            expect(page.locator("#log .row", has_text="task 8 | processing").first).to_be_attached(
                timeout=60_000
            )
            # the lines the model parser read (its timings) carry a mark
            expect(page.locator("#log .row.parsed").first).to_be_attached(timeout=10_000)
            page.fill("#search", "tokens per second")
            expect(page.locator("#match-count")).to_have_text(re.compile(r"\d+ match"))
            page.locator("#log .row", has_text="prompt eval time").last.click()
            page.locator("#log").focus()
            page.keyboard.press("End")
            page.mouse.move(0, 0)
            page.screenshot(path=str(out / "screenshot-viewer.png"))

            page.set_viewport_size({"width": 1280, "height": 960})
            page.goto(url + "/")
            page.get_by_label("Watch vllm in the live view").check()
            page.get_by_label("Watch api in the live view").check()
            expect(page.locator("#merged-log .row .proc", has_text="api").first).to_be_visible()
            expect(page.locator("tr[data-process=llama-70b] .loadbar")).to_be_visible()
            expect(page.locator("tr[data-process=vllm] .tps")).to_be_visible(timeout=30_000)
            expect(page.locator("tr.exit-row[data-exit-for=worker]")).to_be_visible(timeout=20_000)
            # a minute of samples, so that the sparklines have a shape
            page.wait_for_timeout(max(0.0, settle - (time.monotonic() - started)) * 1000)
            expect(page.locator("tr[data-process=qwen3] .spark canvas")).to_have_count(5)
            page.mouse.move(0, 0)
            page.screenshot(path=str(out / "screenshot-dashboard.png"))
            context.close()
        finally:
            browser.close()
    print(f"wrote {out / 'screenshot-dashboard.png'} and {out / 'screenshot-viewer.png'}")  # noqa: T201


if __name__ == "__main__":
    raise SystemExit(main())
