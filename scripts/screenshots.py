"""Take the README screenshots of the dashboard and the log viewer (1280×800).

    python scripts/screenshots.py [--out docs]

Starts the real `logcast serve` in a temporary folder with three demo processes (a
llama.cpp-like model server, a uvicorn-like API and a stopped worker), opens Debian's
Chromium through Playwright and writes `screenshot-dashboard.png` and
`screenshot-viewer.png`. Everything is stopped again at the end, by process group.
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

MODEL = r"""
import random, sys, time
G, Y, R, D, B, X = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[2m", "\x1b[1m", "\x1b[0m"
out = sys.stdout
print("ggml_cuda_init: found 1 CUDA devices:")
print("  Device 0: NVIDIA RTX 4090, compute capability 8.9, VMM: yes")
print("llama_model_loader: loaded meta data with 33 key-value pairs and 399 tensors from qwen3-8b.gguf")
print("llama_model_loader: - type  f32:  145 tensors")
print("llama_model_loader: - type q4_K:  216 tensors")
for i in range(0, 101, 5):
    out.write(f"\rloading model: {i:3d}%|" + "█" * (i // 5) + " " * (20 - i // 5) + f"| {i * 4}/400 [00:0{i // 30}<00:00]")
    out.flush()
    time.sleep(0.01)
print()
print("llm_load_tensors: offloading 36 repeating layers to GPU")
print("llm_load_tensors: offloaded 37/37 layers to GPU")
print(f"{Y}WARN{X} llama_context: n_ctx_per_seq (8192) < n_ctx_train (40960) -- the full capacity of the model will not be utilized")
print("llama_context: KV self size  = 1152.00 MiB, K (f16):  576.00 MiB, V (f16):  576.00 MiB")
print(f"main: {G}server is listening on http://127.0.0.1:8081{X} - starting the main loop")
task = 0
while True:
    task += 1
    n = random.randint(8, 900)
    print(f"slot launch_slot_: id  0 | task {task} | processing task")
    print(f"slot update_slots: id  0 | task {task} | prompt processing progress, n_past = {n}, n_tokens = {n}, progress = 1.000000")
    print(f"prompt eval time = {random.uniform(20, 400):8.2f} ms / {n:4d} tokens ({random.uniform(900, 4000):7.2f} tokens per second)")
    print(f"       eval time = {random.uniform(300, 4000):8.2f} ms / {random.randint(20, 400):4d} tokens ({random.uniform(40, 120):6.2f} tokens per second)")
    if task % 7 == 0:
        print(f"{R}ERROR{X} srv  send_error: task id = {task}, error: the request exceeds the available context size", file=sys.stderr)
    if task % 5 == 0:
        print(f"{Y}WARNING{X} slot {B}0{X} is at 92% of its context; consider --ctx-size 16384")
    print(f'{D}srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 200{X}')
    out.flush()
    time.sleep(random.uniform(0.2, 0.6))
"""

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

WORKER = "import time\nprint('worker ready')\ntime.sleep(3600)\n"


def config() -> str:
    def proc(name: str, source: str, **opts: object) -> str:
        lines = [f"[process.{name}]", f"command = {json.dumps([sys.executable, '-u', '-c', source])}"]
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
                "qwen3", MODEL, restart="on-failure", env={"CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": "hf_demo"}
            ),
            proc("api", API, restart="always"),
            proc("worker", WORKER, autostart=False),
        ]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
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
            shoot(url, args.out)
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


def shoot(url: str, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
            page = context.new_page()
            # let the demo run for a while so counters and histories have something to show
            page.goto(url + "/logs.html?process=qwen3")
            expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            expect(page.locator("#log .row", has_text="task 12 | processing").first).to_be_attached(
                timeout=30_000
            )
            page.fill("#search", "error")
            expect(page.locator("#match-count")).to_have_text(re.compile(r"\d+ match"))
            page.locator("#log .row", has_text="prompt eval time").last.click()
            page.locator("#log").focus()
            page.keyboard.press("End")
            page.mouse.move(0, 0)
            page.screenshot(path=str(out / "screenshot-viewer.png"))

            page.goto(url + "/")
            page.get_by_label("Watch qwen3 in the live view").check()
            page.get_by_label("Watch api in the live view").check()
            expect(page.locator("#merged-log .row .proc", has_text="api").first).to_be_visible()
            expect(page.locator("tr[data-process=qwen3] .last-error")).not_to_be_empty(timeout=20_000)
            page.mouse.move(0, 0)
            page.screenshot(path=str(out / "screenshot-dashboard.png"))
            context.close()
        finally:
            browser.close()
    print(f"wrote {out / 'screenshot-dashboard.png'} and {out / 'screenshot-viewer.png'}")  # noqa: T201


if __name__ == "__main__":
    raise SystemExit(main())
