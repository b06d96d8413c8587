"""`logcast tail` as a real subprocess against a real server."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import free_port, stop_group
from tests.e2e.conftest import Server, py_command

pytestmark = pytest.mark.e2e

Make = Callable[..., Server]


def _default_sigint() -> None:
    """Ctrl-C must reach tail as in a terminal, even when the tests themselves run as a
    background job (whose children inherit SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Tail:
    """A running `logcast tail`, its stdout and stderr read by threads as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, *, tty: bool = False):
        environ = {
            k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "LOGCAST_URL", "LOGCAST_TOKEN")
        }
        environ.update(env or {})
        stdout: int = subprocess.PIPE
        if tty:  # stdout on a pseudo-terminal, as in a real terminal
            master, stdout = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logcast", "tail", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=environ,
            preexec_fn=_default_sigint,
        )
        out: IO[bytes]
        if tty:
            os.close(stdout)
            out = os.fdopen(master, "rb", buffering=0)
        else:
            assert self.proc.stdout is not None
            out = self.proc.stdout
        assert self.proc.stderr is not None
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read, args=(out, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, pipe: IO[bytes], into: list[str]) -> None:
        with contextlib.suppress(OSError):  # a pty's master reads EIO once the child is gone
            for raw in iter(pipe.readline, b""):
                with self._changed:
                    into.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                    self._changed.notify_all()
        pipe.close()
        with self._changed:
            self._changed.notify_all()

    def wait_out(self, predicate: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
        return self._wait(self.out, predicate, timeout, "stdout")

    def wait_err(self, predicate: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
        return self._wait(self.err, predicate, timeout, "stderr")

    def _wait(
        self, lines: list[str], predicate: Callable[[list[str]], bool], timeout: float, what: str
    ) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(lines)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out on {what}:\nstdout={self.out!r}\nstderr={self.err!r}")
                if self.proc.poll() is not None and all(not t.is_alive() for t in self._threads):
                    raise AssertionError(
                        f"tail exited with {self.proc.returncode}:\nstdout={self.out!r}\nstderr={self.err!r}"
                    )
                self._changed.wait(min(left, 0.1))
            return list(lines)

    def finish(self, timeout: float = 20.0) -> int:
        """Wait for tail to exit by itself; the exit code."""
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return code

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it; the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def kill(self) -> None:
        stop_group(self.proc)


@pytest.fixture
def tail(tmp_path: Path) -> Iterator[Callable[..., Tail]]:
    started: list[Tail] = []

    def run(*args: str, env: dict[str, str] | None = None, tty: bool = False) -> Tail:
        t = Tail(list(args), tmp_path, env, tty=tty)
        started.append(t)
        return t

    yield run
    for t in started:
        t.kill()


def api(server: Server, method: str, path: str) -> httpx.Response:
    with server.client() as c:
        return c.request(method, path)


def wait_lines(server: Server, name: str, needle: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = api(server, "GET", f"/api/processes/{name}/logs?after=0&limit=10000").json()["logs"]
        if any(needle in log["message"] for log in logs):
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} never printed {needle!r}")


def gated(go: Path, before: list[str], after: list[str]) -> str:
    """A child printing `before`, waiting for the file `go`, printing `after`, then sleeping."""
    return py_command(
        f"""
        import os, time
        for line in {before!r}:
            print(line, flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        for line in {after!r}:
            print(line, flush=True)
        time.sleep(3600)
        """
    )


def with_marker(lines: list[str], marker: str) -> list[str]:
    return [line for line in lines if marker in line]


def log_lines(lines: list[str]) -> list[str]:
    """The child's own lines, without logcast's status lines (which quote its command)."""
    return [line for line in lines if "[logcast]" not in line and '"stream":"system"' not in line]


def test_waits_for_a_stopped_process_then_history_then_live(
    make_server: Make, tail: Callable[..., Tail], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    early = [f"early {i}" for i in range(5)]
    late = [f"late {i}" for i in range(5)]
    server = make_server(f"[process.web]\ncommand = {gated(go, early, late)}\nautostart = false\n")
    t = tail("web", "--url", server.url, "--interval", "0.1")
    t.wait_err(lambda err: any("🔴" in line and "not running" in line for line in err))
    assert t.out == []
    assert api(server, "POST", "/api/processes/web/start").status_code == 200
    t.wait_err(lambda err: any("🟢" in line and "connected" in line for line in err))
    t.wait_out(lambda out: any("early 4" in line for line in log_lines(out)))
    go.touch()
    out = t.wait_out(lambda out: any("late 4" in line for line in log_lines(out)))
    printed = [line for line in log_lines(out) if "early" in line or "late" in line]
    # Every line once, in order; history (whatever was written before we connected) first.
    assert [line.rsplit(" ", 2)[-2] + " " + line.rsplit(" ", 1)[-1] for line in printed] == early + late
    markers = ["[history]" in line for line in printed]
    assert markers == sorted(markers, reverse=True)
    assert all(line.startswith("[live]") for line in printed if "late" in line)
    assert t.interrupt() == 0
    assert "Traceback" not in "\n".join(t.err)


def test_a_waiting_tail_follows_at_once_when_the_process_starts_not_at_its_next_attempt(
    make_server: Make, tail: Callable[..., Tail]
) -> None:
    """Between two attempts the tail watches the process's status events: it connects
    when the process starts, not up to `--interval` later (here a minute), with every
    line from the first."""
    lines = [f"line {i}" for i in range(20)]
    command = py_command(
        f"import time\nfor line in {lines!r}:\n    print(line, flush=True)\ntime.sleep(3600)"
    )
    server = make_server(f"[process.web]\ncommand = {command}\nautostart = false\n")
    t = tail("web", "--url", server.url, "--interval", "60", "--bare")
    t.wait_err(lambda err: any("not running" in line for line in err))
    assert api(server, "POST", "/api/processes/web/start").status_code == 200
    out = t.wait_out(lambda out: "line 19" in out, timeout=20)
    assert out == lines
    assert sum("not running" in line for line in t.err) == 1, t.err  # no second attempt was needed
    assert t.interrupt() == 0


@pytest.fixture
def early_late(make_server: Make, tmp_path: Path) -> tuple[Server, Path]:
    go = tmp_path / "go"
    early = ["INFO:root:early 0", "WARNING:root:early 1", "ERROR:root:early bad 2", "INFO:root:early 3"]
    late = ["ERROR:root:late bad 0", "INFO:root:late 1", "WARNING:root:late bod 2"]
    server = make_server(f"[process.web]\ncommand = {gated(go, early, late)}\n")
    wait_lines(server, "web", "early 3")
    return server, go


def test_history_marked_then_live(early_late: tuple[Server, Path], tail: Callable[..., Tail]) -> None:
    server, go = early_late
    t = tail("web", "--url", server.url)
    out = t.wait_out(lambda out: any("early 3" in line for line in log_lines(out)))
    history = with_marker(out, "[history]")
    assert [line.split(":root:")[1] for line in log_lines(history) if ":root:" in line] == [
        "early 0",
        "early 1",
        "early bad 2",
        "early 3",
    ]
    assert any("[logcast] web:" in line for line in history)  # the start, as a system line
    go.touch()
    out = t.wait_out(lambda out: any("late bod 2" in line for line in log_lines(out)))
    live = with_marker(out, "[live]")
    assert [line.split(":root:")[1] for line in live if ":root:" in line] == [
        "late bad 0",
        "late 1",
        "late bod 2",
    ]
    assert "ERROR" in live[0] and ":" in live[0].split(" ")[1]  # level and time shown
    assert t.interrupt() == 0


def test_lines_no_history_level_grep(early_late: tuple[Server, Path], tail: Callable[..., Tail]) -> None:
    server, go = early_late
    two = tail("web", "--url", server.url, "--lines", "2")
    none = tail("web", "--url", server.url, "--no-history")
    warn = tail("web", "--url", server.url, "--level", "warning")
    grep = tail("web", "--url", server.url, "--grep", "b[ao]d")
    for t in (two, none, warn, grep):
        t.wait_err(lambda err: any("connected" in line for line in err))
    two.wait_out(lambda out: any("early 3" in line for line in log_lines(out)))
    warn.wait_out(lambda out: any("early bad 2" in line for line in log_lines(out)))
    grep.wait_out(lambda out: any("early bad 2" in line for line in log_lines(out)))
    go.touch()
    for t in (two, none, warn, grep):
        t.wait_out(lambda out: any("late bod 2" in line for line in log_lines(out)))

    def texts(t: Tail) -> list[str]:
        return [line.split(":root:")[1] for line in log_lines(t.out) if ":root:" in line]

    assert texts(two) == ["early bad 2", "early 3", "late bad 0", "late 1", "late bod 2"]
    assert texts(none) == ["late bad 0", "late 1", "late bod 2"]
    assert not with_marker(none.out, "[history]")
    assert texts(warn) == ["early 1", "early bad 2", "late bad 0", "late bod 2"]
    assert texts(grep) == ["early bad 2", "late bad 0", "late bod 2"]
    for t in (two, none, warn, grep):
        assert t.interrupt() == 0


def test_json_output(early_late: tuple[Server, Path], tail: Callable[..., Tail]) -> None:
    server, go = early_late
    t = tail("web", "--url", server.url, "--json")
    t.wait_out(lambda out: any("early 3" in line for line in log_lines(out)))
    go.touch()
    out = t.wait_out(lambda out: any("late bod 2" in line for line in log_lines(out)))
    events = [json.loads(line) for line in out]  # nothing but JSON on stdout
    kinds = [e["type"] for e in events]
    assert kinds.count("historical_complete") == 1
    assert all(e["process"] == "web" for e in events)
    lines = [e for e in events if e["type"] in ("historical", "realtime") and e["log"]["stream"] != "system"]
    assert [e["log"]["message"].split(":root:")[1] for e in lines] == [
        "early 0",
        "early 1",
        "early bad 2",
        "early 3",
        "late bad 0",
        "late 1",
        "late bod 2",
    ]
    assert [e["log"]["level"] for e in lines][:3] == ["info", "warning", "error"]
    seqs = [e["log"]["seq"] for e in events if "log" in e]
    assert seqs == sorted(set(seqs))
    assert any("connected" in line for line in t.err)
    assert t.interrupt() == 0


def test_several_processes_prefixed(make_server: Make, tail: Callable[..., Tail]) -> None:
    def talker(word: str) -> str:
        return py_command(f"import time\nprint('{word} says hi', flush=True)\ntime.sleep(3600)")

    server = make_server(
        f"[process.alpha]\ncommand = {talker('alpha')}\n[process.b]\ncommand = {talker('bee')}\n"
    )
    t = tail("alpha", "b", "--url", server.url)
    out = t.wait_out(
        lambda out: (
            any("alpha says hi" in line for line in log_lines(out))
            and any("bee says hi" in line for line in log_lines(out))
        )
    )
    assert any(line.startswith("alpha | [history]") and "alpha says hi" in line for line in out)
    assert any(line.startswith("b     | [history]") and "bee says hi" in line for line in out)
    assert not any(line.startswith("b ") and "alpha" in line for line in out)
    assert t.interrupt() == 0


def test_a_process_followed_by_its_alias_is_shown_under_the_alias(
    make_server: Make, tail: Callable[..., Tail]
) -> None:
    def talker(word: str) -> str:
        return py_command(f"import time\nprint('{word} says hi', flush=True)\ntime.sleep(3600)")

    server = make_server(
        f"[process.alpha]\ncommand = {talker('alpha')}\n"
        f'[process.qwen3]\ncommand = {talker("qwen")}\naliases = ["qwen"]\n'
    )
    t = tail("alpha", "qwen", "--url", server.url)
    out = t.wait_out(lambda out: sum("says hi" in line for line in log_lines(out)) == 2)
    assert any(line.startswith("qwen  | [history]") and "qwen says hi" in line for line in out), out
    assert any(line.startswith("alpha | [history]") and "alpha says hi" in line for line in out), out
    assert t.interrupt() == 0


def test_follows_across_server_restart_exactly_once(make_server: Make, tail: Callable[..., Tail]) -> None:
    ticker = py_command(
        """
        import itertools, time
        for i in itertools.count():
            print(f"tick {i}", flush=True)
            time.sleep(0.01)
        """
    )
    server = make_server(f"[process.ticker]\ncommand = {ticker}\n")
    t = tail("ticker", "--url", server.url, "--json", "--interval", "0.1")
    t.wait_out(lambda out: len(out) > 30)
    server.restart()

    def runs(out: list[str]) -> set[int]:
        return {e["log"]["run"] for e in map(json.loads, out) if "log" in e}

    t.wait_out(lambda out: len(out) > 30 and runs(out) >= {1, 2} and len(out) > 100, timeout=30)
    t.wait_err(lambda err: any("⚫" in line for line in err))
    assert t.interrupt() == 0
    events = [json.loads(line) for line in t.out]
    seqs = [e["log"]["seq"] for e in events if "log" in e]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a line was lost or repeated"
    assert not any(e["type"] == "gap" for e in events)


def test_max_attempts_gives_up(make_server: Make, tail: Callable[..., Tail]) -> None:
    dead = tail(
        "web", "--url", f"http://127.0.0.1:{free_port()}", "--max-attempts", "3", "--interval", "0.05"
    )
    assert dead.finish() == 1
    assert sum("⚫" in line for line in dead.err) == 3
    assert "gave up after 3 attempts" in dead.err[-1]
    assert dead.out == []

    server = make_server(f"[process.web]\ncommand = {py_command('print(1)')}\nautostart = false\n")
    stopped = tail("web", "--url", server.url, "--max-attempts", "2", "--interval", "0.05")
    assert stopped.finish() == 1
    assert sum("🔴" in line and "attempt" in line for line in stopped.err) == 2
    assert "Traceback" not in "\n".join(dead.err + stopped.err)


def test_chinese(early_late: tuple[Server, Path], make_server: Make, tail: Callable[..., Tail]) -> None:
    server, _ = early_late
    t = tail("web", "--url", server.url, "--lang", "zh")
    t.wait_err(lambda err: any("🟢" in line and "已连接" in line for line in err))
    t.wait_out(lambda out: any(line.startswith("[历史]") and "early 3" in line for line in log_lines(out)))
    assert t.interrupt() == 0
    idle = make_server(f"[process.idle]\ncommand = {py_command('print(1)')}\nautostart = false\n")
    waiting = tail("idle", "--url", idle.url, "--lang", "zh", "--max-attempts", "1")
    assert waiting.finish() == 1
    assert any("🔴" in line and "模型未运行" in line for line in waiting.err)


def test_hostile_escape_sequences(make_server: Make, tail: Callable[..., Tail]) -> None:
    hostile = py_command(
        r"""
        import time
        print("before \x1b]0;pwned\x07title \x1b[2J\x1b[31mred\x1b[0m after", flush=True)
        time.sleep(3600)
        """
    )
    server = make_server(f"[process.evil]\ncommand = {hostile}\n")
    wait_lines(server, "evil", "after")
    piped = tail("evil", "--url", server.url)
    raw = tail("evil", "--url", server.url, "--raw")
    terminal = tail("evil", "--url", server.url, tty=True)
    no_color = tail("evil", "--url", server.url, tty=True, env={"NO_COLOR": "1"})

    def line_of(t: Tail) -> str:
        out = t.wait_out(lambda out: any("after" in x for x in log_lines(out)))
        return next(x for x in log_lines(out) if "after" in x)

    # A pipe gets plain text: neither the hostile sequences nor colours.
    assert line_of(piped).endswith("INFO     before title red after")
    assert "\x1b" not in line_of(piped) and "\x07" not in line_of(piped)
    # --raw passes the bytes on untouched.
    assert "\x1b]0;pwned\x07title \x1b[2J\x1b[31mred\x1b[0m after" in line_of(raw)
    # A terminal keeps the colours (SGR) and nothing else.
    coloured = line_of(terminal)
    assert "\x1b[31mred\x1b[0m" in coloured
    assert "\x1b]" not in coloured and "\x07" not in coloured and "\x1b[2J" not in coloured
    assert "\x1b" not in line_of(no_color)
    for t in (piped, raw, terminal, no_color):
        assert t.interrupt() == 0


def test_unknown_process_and_usage_errors(make_server: Make, tail: Callable[..., Tail]) -> None:
    server = make_server(f"[process.web]\ncommand = {py_command('print(1)')}\nautostart = false\n")
    unknown = tail("nope", "--url", server.url)
    assert unknown.finish() == 1
    assert any("unknown process" in line and "nope" in line for line in unknown.err)

    bad_regex = tail("web", "--url", server.url, "--grep", "(")
    assert bad_regex.finish() == 2
    assert any("regex" in line for line in bad_regex.err)
    bad_level = tail("web", "--url", server.url, "--level", "loud")
    assert bad_level.finish() == 2
    assert any("level" in line for line in bad_level.err)
    no_name = tail("--url", server.url)
    assert no_name.finish() == 2


def test_token(make_server: Make, tail: Callable[..., Tail]) -> None:
    sleeper = py_command("import time; time.sleep(3600)")
    server = make_server(f"[process.web]\ncommand = {sleeper}\n", token="s3cret")
    denied = tail("web", "--url", server.url)
    assert denied.finish() == 1
    assert any("token missing or wrong" in line for line in denied.err)
    allowed = tail("web", "--url", server.url, env={"LOGCAST_TOKEN": "s3cret"})
    allowed.wait_err(lambda err: any("connected" in line for line in err))
    assert allowed.interrupt() == 0


def test_no_wait_shows_a_finished_process(make_server: Make, tail: Callable[..., Tail]) -> None:
    job = py_command("print('job done', flush=True)")
    server = make_server(f'[process.job]\ncommand = {job}\nrestart = "never"\n')
    wait_lines(server, "job", "job done")
    t = tail("job", "--url", server.url, "--no-wait")
    t.wait_out(lambda out: any(x.startswith("[history]") and "job done" in x for x in log_lines(out)))
    assert not any("not running" in line for line in t.err)
    assert t.interrupt() == 0


def test_bare_lines_as_written_safe_and_masked(
    make_server: Make, tail: Callable[..., Tail], tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            r"""
        import time
        print("plain line", flush=True)
        print("\x1b[31mred\x1b[0m and \x1b]0;pwned\x07title \x1b[2Jcleared", flush=True)
        print("ERROR: last", flush=True)
        time.sleep(3600)
        """
        )
    )
    # credentials on its command line: the status lines that quote it mask them
    # (short, so that the status line quotes it whole)
    command = json.dumps(["python3", "-u", "child.py", "--api-key", "sup3rs3cret"])
    server = make_server(f"[process.web]\ncommand = {command}\ncwd = {json.dumps(str(tmp_path))}\n")
    wait_lines(server, "web", "last")
    piped = tail("web", "--url", server.url, "--bare")
    terminal = tail("web", "--url", server.url, "--bare", tty=True)
    expected = ["plain line", "red and title cleared", "ERROR: last"]
    for t in (piped, terminal):
        out = t.wait_out(lambda out: "ERROR: last" in out)
        assert out == expected  # the lines alone: no marker, time, level, colour or status line
        err = t.wait_err(lambda err: any("[logcast] web: started" in line for line in err))
        assert any(line.startswith("[logcast] web: starting") and "--api-key ••••••" in line for line in err)
        assert "sup3rs3cret" not in "\n".join(t.out + t.err)
        assert t.interrupt() == 0
    raw = tail("web", "--url", server.url, "--bare", "--raw")
    out = raw.wait_out(lambda out: "ERROR: last" in out)
    assert out[1] == "\x1b[31mred\x1b[0m and \x1b]0;pwned\x07title \x1b[2Jcleared"
    assert raw.interrupt() == 0


def test_bare_every_line_of_a_flood_in_order(make_server: Make, tail: Callable[..., Tail]) -> None:
    flood = py_command(
        """
        import sys, time
        sys.stdout.write("".join(f"flood {i}\\n" for i in range(30000)))
        sys.stdout.flush()
        time.sleep(3600)
        """
    )
    server = make_server(f"[process.flood]\ncommand = {flood}\nautostart = false\n")
    t = tail("flood", "--url", server.url, "--bare", "--interval", "0.1")
    t.wait_err(lambda err: any("not running" in line for line in err))
    assert api(server, "POST", "/api/processes/flood/start").status_code == 200
    out = t.wait_out(lambda out: "flood 29999" in out, timeout=60)
    assert out == [f"flood {i}" for i in range(30000)]
    assert t.interrupt() == 0


def test_bare_with_json_is_a_usage_error(make_server: Make, tail: Callable[..., Tail]) -> None:
    server = make_server(f"[process.web]\ncommand = {py_command('print(1)')}\nautostart = false\n")
    both = tail("web", "--url", server.url, "--bare", "--json")
    assert both.finish() == 2
    assert any("--bare and --json cannot be used together" in line for line in both.err)
    assert both.out == []
