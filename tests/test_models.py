"""logcast.models: model servers' output → model state, replayed from corpora of their lines.

The corpora (tests/data/models/, format in its README.md) hold every line shape each parser
reads, per release, each annotated with the state it must leave; lines without annotation
must change nothing and not be marked.
"""

from __future__ import annotations

import math
import threading
import timeit
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from logcast.capture.framing import LineFramer
from logcast.models import CHOICES, KINDS, ModelState, ModelWatcher, Phase, detect, make_watcher
from logcast.models.base import ModelState as BaseState
from logcast.models.detect import detect_line

CORPUS = Path(__file__).parent / "data" / "models"

_FIELDS = {
    "phase": "phase",
    "progress": "load_progress",
    "ready_after": "ready_after_s",
    "requests": "requests",
    "prompt_tps": "prompt_tokens_per_s",
    "gen_tps": "gen_tokens_per_s",
    "last_request_at": "last_request_at",
}


@dataclass
class Record:
    text: str
    lineno: int  # in the corpus file
    timestamp: float
    partial: bool = False
    annotated: bool = False
    read: bool = False
    expect: dict[str, str] = field(default_factory=dict)


@dataclass
class Section:
    kind: str
    title: str
    records: list[Record] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"


def _unescape(text: str) -> str:
    return "" if text == "<empty>" else text.replace("\\x1b", "\x1b")


def load_corpus(path: Path) -> list[Section]:
    kind = path.stem
    sections: list[Section] = []
    now = 0.0
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if raw.startswith("##> "):
            record = sections[-1].records[-1]
            assert not record.annotated, f"{path.name}:{lineno}: a second annotation"
            record.annotated = True
            record.read = True
            for token in raw[4:].split():
                if token == "partial":
                    record.partial = True
                elif token == "unread":
                    record.read = False
                else:
                    key, _, value = token.partition("=")
                    assert key in _FIELDS, f"{path.name}:{lineno}: unknown expectation {key!r}"
                    record.expect[key] = value
        elif raw.startswith("## section: "):
            sections.append(Section(kind, raw.removeprefix("## section: ")))
            now = 0.0
        elif raw.startswith("## t="):
            now = float(raw.removeprefix("## t="))
        elif raw.startswith("##") or not raw:
            continue
        else:
            assert sections, f"{path.name}:{lineno}: a record before the first section"
            sections[-1].records.append(Record(_unescape(raw), lineno, now))
    return sections


SECTIONS = [section for kind in KINDS for section in load_corpus(CORPUS / f"{kind}.log")]


def _check(state: ModelState, expect: dict[str, str], where: str) -> None:
    for key, want in expect.items():
        got = getattr(state, _FIELDS[key])
        if want == "none":
            assert got is None, f"{where}: {key} is {got!r}, want None"
        elif key == "phase":
            assert got == Phase(want), f"{where}: phase is {got!r}, want {want}"
        elif key == "requests":
            assert got == int(want), f"{where}: requests is {got!r}, want {want}"
        else:
            assert got is not None and math.isclose(got, float(want), abs_tol=1e-6), (
                f"{where}: {key} is {got!r}, want {want}"
            )


# --- the corpora, record by record ---------------------------------------------------------


@pytest.mark.parametrize("section", SECTIONS, ids=str)
def test_corpus_record_by_record(section: Section) -> None:
    """Each record alone in its chunk: annotated records leave the state they name and are
    marked (unless `unread`); the others change nothing and are not marked."""
    watcher = make_watcher(section.kind)
    assert watcher.kind == section.kind
    for record in section.records:
        where = f"{section.kind}.log:{record.lineno}"
        before = watcher.state
        changed = watcher.feed([record.text], [record.partial], record.timestamp)
        after = watcher.state
        assert changed == (after != before), f"{where}: feed said changed={changed}"
        if record.annotated:
            assert watcher.last_marked == ((0,) if record.read else ()), (
                f"{where}: marked {watcher.last_marked}"
            )
            _check(after, record.expect, where)
        else:
            assert watcher.last_marked == (), f"{where}: a record without annotation was marked"
            assert not changed, f"{where}: a record without annotation changed {before} → {after}"


def _replay_in_chunks(watcher: ModelWatcher, section: Section, size: int) -> set[int]:
    """Feed records `size` at a time (a chunk never spans two timestamps); the corpus line
    numbers of the records marked."""
    marked: set[int] = set()
    records = section.records
    start = 0
    while start < len(records):
        end = start + 1
        while (
            end < len(records) and end - start < size and records[end].timestamp == records[start].timestamp
        ):
            end += 1
        chunk = records[start:end]
        watcher.feed([r.text for r in chunk], [r.partial for r in chunk], chunk[0].timestamp)
        marked.update(chunk[i].lineno for i in watcher.last_marked)
        start = end
    return marked


@pytest.mark.parametrize("size", [3, 50])
@pytest.mark.parametrize("section", SECTIONS, ids=str)
def test_corpus_in_chunks_reads_the_same(section: Section, size: int) -> None:
    one = make_watcher(section.kind)
    for record in section.records:
        one.feed([record.text], [record.partial], record.timestamp)
    chunked = make_watcher(section.kind)
    marked = _replay_in_chunks(chunked, section, size)
    assert chunked.state == one.state
    assert marked == {r.lineno for r in section.records if r.read}


@pytest.mark.parametrize("section", SECTIONS, ids=str)
def test_corpus_auto_detects_before_the_first_line_read(section: Section) -> None:
    first_read = next(i for i, r in enumerate(section.records) if r.read)
    first_sign = next(i for i, r in enumerate(section.records) if detect_line(r.text) is not None)
    assert first_sign <= first_read, f"{section}: the first line read comes before any sign of the server"
    assert detect([r.text for r in section.records]) == section.kind
    auto = make_watcher(None)
    explicit = make_watcher(section.kind)
    for record in section.records:
        auto.feed([record.text], [record.partial], record.timestamp)
        explicit.feed([record.text], [record.partial], record.timestamp)
    assert auto.kind == section.kind
    assert auto.state == explicit.state


def test_every_corpus_has_sections_and_expectations() -> None:
    for kind in KINDS:
        sections = [s for s in SECTIONS if s.kind == kind]
        assert len(sections) >= 3, kind
        phases = {r.expect.get("phase") for s in sections for r in s.records}
        assert {"loading", "ready", "serving", "idle", "failed"} <= phases, kind


# --- llama.cpp's dots, through the real framer -------------------------------------------


def _frame(framer: LineFramer, data: bytes) -> tuple[list[str], list[bool]]:
    framed = framer.feed(data)
    return framed.texts, framed.partial


def _flush(framer: LineFramer) -> tuple[list[str], list[bool]]:
    framed = framer.flush(idle=True)
    return framed.texts, framed.partial


def test_dots_arrive_as_partial_pieces_then_the_end() -> None:
    """The loader prints a dot per percent step on one line, flushed as it goes: logcast's
    framer hands on a partial record per idle flush, then the rest when the newline comes."""
    framer = LineFramer()
    watcher = make_watcher("llamacpp")
    assert watcher.feed(
        *_frame(
            framer,
            b"srv    load_model: loading model 'm.gguf'\nload_tensors: offloaded 29/29 layers to GPU\n",
        ),
        0.0,
    )
    assert watcher.state.phase is Phase.LOADING and watcher.state.load_progress is None
    progress: list[float | None] = []
    for step in range(4):
        assert watcher.feed(*_frame(framer, b"." * 10), 1.0 + step) is False  # buffered, nothing framed yet
        texts, partial = _flush(framer)
        assert partial == [True]
        assert watcher.feed(texts, partial, 1.5 + step)
        assert watcher.last_marked == (0,)
        progress.append(watcher.state.load_progress)
    assert progress == [0.1, 0.2, 0.3, 0.4]
    texts, partial = _frame(framer, b"." * 60 + b"\nllama_context: n_ctx = 4096\n")
    assert partial == [False, False]
    assert watcher.feed(texts, partial, 9.0)
    assert watcher.last_marked == (0,)
    assert watcher.state.load_progress == 1.0
    assert watcher.state.phase is Phase.LOADING


def test_dots_line_ending_right_after_a_flush_ends_with_an_empty_piece() -> None:
    framer = LineFramer()
    watcher = make_watcher("llamacpp")
    watcher.feed(*_frame(framer, b"llama_model_loader: loaded meta data with 26 key-value pairs\n"), 0.0)
    watcher.feed(*_frame(framer, b"." * 120), 1.0)  # more dots than percents: capped below 1 until the end
    watcher.feed(*_flush(framer), 1.5)
    assert watcher.state.load_progress == 0.99
    texts, partial = _frame(framer, b"\n")
    assert texts == [""] and partial == [False]
    assert watcher.feed(texts, partial, 2.0)
    assert watcher.last_marked == (0,)
    assert watcher.state.load_progress == 1.0


def test_dots_after_the_load_or_in_other_lines_are_not_progress() -> None:
    watcher = make_watcher("llamacpp")
    watcher.feed(["main: loading model"], [False], 0.0)
    for text in ("... done", ".. hello ..", "loading..."):
        assert watcher.feed([text], [False], 1.0) is False
        assert watcher.last_marked == ()
    watcher.feed(["main: model loaded"], [False], 2.0)
    assert watcher.feed(["......"], [True], 3.0) is False
    assert watcher.state.load_progress == 1.0


def test_vllm_shard_bars_framed_from_tqdm_output() -> None:
    """tqdm redraws with a leading carriage return; vLLM's bar format ends in a newline."""
    framer = LineFramer()
    watcher = make_watcher("vllm")
    watcher.feed(
        *_frame(framer, b"INFO 08-20 10:00:02 [api_server.py:1805] vLLM API server version 0.10.1.1\n"), 0.0
    )
    seen = []
    for done in range(3):
        bar = f"\rLoading safetensors checkpoint shards: {done * 50:3d}% Completed | {done}/2 [00:0{done}<00:00,  1.9it/s]\n"
        texts, partial = _frame(framer, bar.encode())
        watcher.feed(texts, partial, 1.0 + done)
        seen.append(watcher.state.load_progress)
    assert seen == [0.0, 0.5, 1.0]


# --- detection and the kinds ----------------------------------------------------------------


ORDINARY = [
    'INFO:     10.0.3.7:52344 - "GET /api/items/42 HTTP/1.1" 200 OK',
    "2024-01-01 12:00:00,123 - app.db - WARNING - connection pool is almost exhausted (9/10)",
    "[INFO] Loading configuration from /etc/app/config.yaml",
    "Traceback (most recent call last):",
    '  File "/srv/app/main.py", line 12, in <module>',
    "KeyError: 'user'",
    "worker 3: processed 120 jobs in 4.2s ...",
    "...",
    "",
    "GET /healthz 200 0.4ms",
]


def test_detect_picks_the_server_from_its_first_lines() -> None:
    for section in SECTIONS:
        assert detect([r.text for r in section.records]) == section.kind, section
    assert detect(ORDINARY) is None
    assert detect([]) is None
    # a review: a LlamaIndex app (`llama_index.core`) was taken for llama.cpp, and a later
    # "cache out of memory" warning of its own made it `failed`
    assert detect(["INFO:llama_index.core.indices.loading:Loading all indices."]) is None
    assert detect(["llama_model_loader: loaded meta data with 30 key-value pairs"]) == "llamacpp"
    late = [*ORDINARY, "srv          main: loading model"]
    assert detect(late) == "llamacpp"
    assert detect(late, limit=len(ORDINARY)) is None
    # SGLang's logs may mention vLLM; a line with both is SGLang's
    assert (
        detect(["[2025-01-01 00:00:00] server_args=ServerArgs(model_path='x', load_format='vLLM')"])
        == "sglang"
    )


def test_make_watcher_kinds() -> None:
    assert CHOICES == ("llamacpp", "vllm", "sglang", "none")
    for kind in KINDS:
        assert make_watcher(kind).kind == kind
    assert make_watcher(None).kind is None
    with pytest.raises(ValueError, match="unknown model server"):
        make_watcher("ollama")


# One record of 64 KiB (the framer's cut) built to make a backtracking engine go
# quadratic or worse on a pattern of each parser: a prompt logged verbatim by the server.
HOSTILE = {
    "vllm": "Avg prompt throughput: 1.0 tokens/s, Avg generation throughput: 1.0 tokens/s, " * 800,
    "llamacpp": "tokens per second " + "a" * 65_000,
    "sglang": "Loading safetensors checkpoint shards: " + "1" * 65_000,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_line_costs_a_parser_no_more_than_an_ordinary_one(kind: str) -> None:
    """A review: one such line held the capture thread, and the GIL, for over 85 s (vLLM's
    pattern backtracked cubically); every pattern is RE2 now, linear in the line. Counted
    in a thread with a bound far above what it takes (milliseconds), so that a regression
    fails instead of hanging the suite."""
    watcher = make_watcher(kind)
    # in the phase where the pattern is looked at: loading (shards), or serving (timings)
    before = {
        "vllm": ["Starting to load model x..."],
        "llamacpp": ["main: loading model", "main: model loaded"],
        "sglang": ["Load weight begin."],
    }
    watcher.feed(before[kind], [False] * len(before[kind]), 0.0)
    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (watcher.feed([HOSTILE[kind]], [False], 1.0), done.set()), daemon=True
    )
    worker.start()
    assert done.wait(10.0), f"{kind}: one hostile line took over 10 s"


def _phase_after(kind: str, lines: list[str]) -> Phase | None:
    watcher = make_watcher(kind)
    for i, text in enumerate(lines):
        watcher.feed([text], [False], float(i))
    return watcher.state.phase


def test_what_servers_say_on_a_healthy_start_or_users_type_is_no_failure() -> None:
    """A review: each of these made a healthy model `failed` for good."""
    # vLLM 0.6 on every start that captures CUDA graphs, at INFO
    graphs = (
        "INFO 11-05 09:12:40 model_runner.py:1402] CUDA graphs can take additional 1~3 GiB memory per GPU."
        " If you are running out of memory, consider decreasing `gpu_memory_utilization` or enforcing eager mode."
    )
    start = [
        "INFO 11-05 09:12:30 api_server.py:528] vLLM API server version 0.6.3",
        "Starting to load model x...",
    ]
    up = ["INFO:     Application startup complete."]
    assert _phase_after("vllm", [*start, graphs, *up]) is Phase.READY
    # a prompt logged verbatim (vLLM before 0.10 does it by default)
    prompt = (
        "INFO 11-05 09:13:00 logger.py:37] Received request cmpl-1-0: prompt: 'why would the Engine loop has"
        " died error show? RuntimeError: no', params: SamplingParams(n=1), prompt_token_ids: [1, 2]"
    )
    assert _phase_after("vllm", [*start, *up, prompt]) is not Phase.FAILED
    # a review: an answer logged verbatim (vLLM --enable-log-outputs), a prompt and an answer
    # of SGLang's --log-requests
    answer = (
        "INFO 11-05 09:13:02 [logger.py:71] Generated response chatcmpl-1: output: 'It means the Engine"
        " loop has died: RuntimeError: CUDA error', output_token_ids: [1, 2], finish_reason: stop"
    )
    assert _phase_after("vllm", [*start, *up, answer]) is not Phase.FAILED
    sglang_start = ["Load weight begin", "The server is fired up and ready to roll!"]
    for said in (
        "[2026-12-07 10:00:00] Receive: obj=GenerateReqInput(text='Why do I get Scheduler hit an exception?')",
        "[2026-12-07 10:00:01] Finish: obj=GenerateReqInput(rid='1'), out={'text': 'Not enough memory, ValueError: x'}",
    ):
        assert _phase_after("sglang", [*sglang_start, said]) is not Phase.FAILED, said
    # llama.cpp falls back to pageable memory and goes on
    pinned = "WARNING: failed to allocate 4096.00 MiB of pinned memory: out of memory"
    llama = ["main: loading model", pinned, "main: model loaded"]
    assert _phase_after("llamacpp", llama) is Phase.READY
    # ...while what does end them still does
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert _phase_after("vllm", [*start, oom]) is Phase.FAILED
    assert (
        _phase_after("llamacpp", ["main: loading model", "error loading model: unable to allocate"])
        is Phase.FAILED
    )


def _stats(engine: str, prompt: float, gen: float, running: int) -> str:
    return (
        f"INFO 11-05 09:13:10 [loggers.py:123] Engine {engine}: Avg prompt throughput: {prompt} tokens/s,"
        f" Avg generation throughput: {gen} tokens/s, Running: {running} reqs, Waiting: 0 reqs,"
        " GPU KV cache usage: 1.0%, Prefix cache hit rate: 0.0%"
    )


def test_vllm_figures_of_several_engines_are_summed_and_a_short_request_was_served() -> None:
    """A review: with data parallelism the last engine's figure was the server's, and a
    request that came and went within one window of figures left the model `ready`."""
    start = ["vLLM API server version 0.10.1", "Starting to load model x...", "Application startup complete."]
    watcher = make_watcher("vllm")
    watcher.feed(start, [False] * len(start), 0.0)
    watcher.feed([_stats("000", 12.0, 40.0, 0)], [False], 10.0)  # served and done within the window
    assert watcher.state.phase is Phase.IDLE
    watcher.feed([_stats("000", 20.0, 80.0, 1), _stats("001", 5.0, 60.0, 2)], [False, False], 20.0)
    state = watcher.state
    assert (state.phase, state.prompt_tokens_per_s, state.gen_tokens_per_s) == (Phase.SERVING, 25.0, 140.0)
    watcher.feed([_stats("000", 0.0, 0.0, 0)], [False], 30.0)  # engine 001 still serves
    assert watcher.state.phase is Phase.SERVING
    watcher.feed([_stats("001", 0.0, 0.0, 0)], [False], 31.0)
    assert watcher.state.phase is Phase.IDLE


def test_parse_none_reads_nothing() -> None:
    watcher = make_watcher("none")
    assert watcher.kind == "none"
    for section in SECTIONS:
        for record in section.records:
            assert watcher.feed([record.text], [record.partial], record.timestamp) is False
            assert watcher.last_marked == ()
    assert watcher.state == ModelState()
    assert watcher.tick(1e9) is False


def test_auto_detection_reads_the_chunk_it_detects_in() -> None:
    watcher = make_watcher(None)
    assert watcher.feed(ORDINARY, [False] * len(ORDINARY), 0.0) is False
    chunk = [*ORDINARY, "main: loading model", "main: model loaded", *ORDINARY]
    assert watcher.feed(chunk, [False] * len(chunk), 4.0)
    assert watcher.kind == "llamacpp"
    assert watcher.last_marked == (len(ORDINARY), len(ORDINARY) + 1)
    assert watcher.state.phase is Phase.READY
    assert watcher.state.ready_after_s == 0.0


def test_auto_detection_gives_up_after_its_first_lines() -> None:
    watcher = ModelWatcher(None, detect_lines=25)
    for step in range(3):
        watcher.feed(ORDINARY, [False] * len(ORDINARY), float(step))
    assert watcher.feed(["main: loading model"], [False], 5.0) is False
    assert watcher.kind is None
    assert watcher.state == ModelState()


def test_state_as_dict_has_the_documented_keys() -> None:
    assert ModelState is BaseState
    watcher = make_watcher("vllm")
    watcher.feed(["INFO 11-05 09:12:01 api_server.py:528] vLLM API server version 0.6.3"], [False], 10.0)
    watcher.feed(["INFO:     Application startup complete."], [False], 40.5)
    assert watcher.state.as_dict() == {
        "phase": "ready",
        "load_progress": 1.0,
        "ready_after_s": 30.5,
        "requests": 0,
        "prompt_tokens_per_s": None,
        "gen_tokens_per_s": None,
        "last_request_at": None,
    }


def test_ready_after_counts_from_the_watchers_start_without_a_load_line() -> None:
    watcher = make_watcher("llamacpp", start=100.0)
    watcher.feed(["srv  update_slots: all slots are idle"], [False], 103.0)
    assert watcher.state.phase is Phase.READY
    assert watcher.state.ready_after_s == 3.0
    first_chunk = make_watcher("vllm")
    first_chunk.feed(["unrelated"], [False], 50.0)
    first_chunk.feed(["INFO:     Application startup complete."], [False], 52.0)
    assert first_chunk.state.ready_after_s == 2.0


def test_a_new_start_after_a_failure_is_a_fresh_load() -> None:
    watcher = make_watcher("llamacpp")
    watcher.feed(["main: loading model"], [False], 0.0)
    watcher.feed(["llama_model_load: error loading model: unknown model architecture: 'x'"], [False], 1.0)
    assert watcher.state.phase is Phase.FAILED
    assert watcher.feed(["main: loading model"], [False], 10.0)
    assert watcher.state == ModelState(phase=Phase.LOADING)
    watcher.feed(["main: model loaded"], [False], 14.0)
    assert watcher.state.ready_after_s == 4.0


def test_sglang_serving_turns_idle_after_silence() -> None:
    watcher = make_watcher("sglang", idle_after_s=5.0)
    watcher.feed(["[2025-08-20 10:00:22] The server is fired up and ready to roll!"], [False], 0.0)
    watcher.feed(
        [
            "[2025-08-20 10:00:30 TP0] Decode batch. #running-req: 2, #token: 90, token usage: 0.00, gen throughput (token/s): 40.00, #queue-req: 0, "
        ],
        [False],
        10.0,
    )
    assert watcher.state.phase is Phase.SERVING
    assert watcher.tick(14.9) is False
    assert watcher.tick(15.0) is True
    assert watcher.state.phase is Phase.IDLE
    assert watcher.tick(99.0) is False
    # the other servers say when they are idle: time alone changes nothing
    llama = make_watcher("llamacpp", idle_after_s=5.0)
    llama.feed(["slot launch_slot_: id  0 | task 0 | processing task"], [False], 0.0)
    assert llama.tick(1e9) is False
    assert llama.state.phase is Phase.SERVING


# --- the fast path ---------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [None, *Phase])
@pytest.mark.parametrize("kind", KINDS)
def test_lines_that_match_nothing_take_the_fast_path(
    kind: str, phase: Phase | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ordinary lines never change the state, are never marked, and never reach the
    line-by-line reading, in any phase."""
    watcher = make_watcher(kind, idle_after_s=1e9)
    parser = watcher._parser
    assert parser is not None
    parser._enter(phase)
    before = watcher.state

    def slow(*args: object) -> bool:
        raise AssertionError("a chunk of ordinary lines took the slow path")

    monkeypatch.setattr(parser, "_read", slow)
    lines = [line for line in ORDINARY if not line.startswith(".")]  # dots are read while llama.cpp loads
    for size in (1, 3, len(lines)):
        for start in range(0, len(lines), size):
            chunk = lines[start : start + size]
            assert watcher.feed(chunk, [False] * len(chunk), 1.0) is False
            assert watcher.last_marked == ()
    assert watcher.state == before


def bench(lines: int = 100_000, chunk: int = 100) -> dict[str, float]:
    """ns per line of `feed` on ordinary (uvicorn access) lines, against an empty loop."""
    texts = [
        f'INFO:     10.0.{i % 250}.{i % 200}:{40000 + i % 20000} - "GET /api/items/{i} HTTP/1.1" 200 OK'
        for i in range(lines)
    ]
    chunks = [texts[i : i + chunk] for i in range(0, lines, chunk)]
    flags = [[False] * len(c) for c in chunks]

    def loop(feed: object) -> float:
        def run() -> None:
            for c, p in zip(chunks, flags, strict=True):
                feed(c, p, 1.0)  # type: ignore[operator]

        return min(timeit.repeat(run, number=1, repeat=5)) / lines * 1e9

    baseline = loop(lambda c, p, t: None)
    results = {"empty loop": baseline}
    for label, kind, phase in [
        ("none", "none", None),
        ("auto, amortised (gives up after 2000 lines)", None, None),
        ("auto, while still looking", "auto-looking", None),
        ("llamacpp, nothing read yet", "llamacpp", None),
        ("llamacpp, loading", "llamacpp", Phase.LOADING),
        ("llamacpp, idle", "llamacpp", Phase.IDLE),
        ("vllm, nothing read yet", "vllm", None),
        ("vllm, idle", "vllm", Phase.IDLE),
        ("sglang, nothing read yet", "sglang", None),
        ("sglang, idle", "sglang", Phase.IDLE),
    ]:
        best = math.inf
        for _ in range(3):
            if kind == "auto-looking":
                watcher = ModelWatcher(None, detect_lines=10 * lines)
            else:
                watcher = make_watcher(kind, idle_after_s=1e9)
            if watcher._parser is not None:
                watcher._parser._enter(phase)
            best = min(best, loop(watcher.feed))
        results[label] = best - baseline
    return results


def test_bench_runs() -> None:
    results = bench(lines=2_000, chunk=100)
    assert all(value == value for value in results.values())


if __name__ == "__main__":
    for label, ns in bench().items():
        print(f"{label:44} {ns:8.1f} ns/line")
