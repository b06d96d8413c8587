"""Prometheus metrics, read from the hub and the processes at scrape time.

A custom collector rather than counters updated on the hot path: capture already
counts everything it needs, and a scrape every few seconds costs nothing per line.
The figures are read through the API's models (`logcast.schemas`), as the routes do.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from logcast.engine import Engine
from logcast.schemas import ProcessRun, ProcessStats, Resources
from logcast.types import ProcessState


class EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        engine = self.engine
        lines = CounterMetricFamily("logcast_lines", "Lines captured", labels=["process"])
        nbytes = CounterMetricFamily("logcast_bytes", "Bytes captured", labels=["process"])
        dropped = CounterMetricFamily(
            "logcast_dropped_lines", "Lines announced to readers as gaps", labels=["process"]
        )
        lost = CounterMetricFamily(
            "logcast_store_lost_lines", "Lines evicted before they were persisted", labels=["process"]
        )
        subs = GaugeMetricFamily("logcast_subscribers", "Open log streams", labels=["process"])
        restarts = CounterMetricFamily("logcast_restarts", "Automatic restarts", labels=["process"])
        state = GaugeMetricFamily(
            "logcast_process_state", "1 for the current state", labels=["process", "state"]
        )
        rate = GaugeMetricFamily("logcast_lines_per_second", "Lines per second, last 5 s", labels=["process"])
        cpu = CounterMetricFamily(
            "logcast_process_cpu_seconds", "CPU time of the process tree in this run", labels=["process"]
        )
        rss = GaugeMetricFamily(
            "logcast_process_resident_memory_bytes", "Resident memory of the process tree", labels=["process"]
        )
        models: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "load_progress": GaugeMetricFamily(
                "logcast_model_load_progress", "Load progress of a model server, 0..1", labels=["process"]
            ),
            "ready_after_s": GaugeMetricFamily(
                "logcast_model_ready_seconds", "Seconds the model server took to be ready", labels=["process"]
            ),
            "requests": CounterMetricFamily(
                "logcast_model_requests", "Requests the model server logged", labels=["process"]
            ),
            "prompt_tokens_per_s": GaugeMetricFamily(
                "logcast_model_prompt_tokens_per_second",
                "Prompt tokens per second, last report",
                labels=["process"],
            ),
            "gen_tokens_per_s": GaugeMetricFamily(
                "logcast_model_generation_tokens_per_second",
                "Generated tokens per second, last report",
                labels=["process"],
            ),
        }
        gpu = GaugeMetricFamily(
            "logcast_process_gpu_memory_bytes", "GPU memory of the process tree", labels=["process", "gpu"]
        )
        for name in engine.hub.names():
            s = ProcessStats.model_validate(engine.hub.stats(name))
            lines.add_metric([name], s.lines)
            nbytes.add_metric([name], s.bytes)
            dropped.add_metric([name], s.dropped)
            lost.add_metric([name], s.store_lost)
            subs.add_metric([name], s.subscribers)
            rate.add_metric([name], s.lines_per_s)
            if name in engine.processes.names():
                run = ProcessRun.model_validate(engine.processes.info(name))
                restarts.add_metric([name], run.restarts)
                for st in ProcessState:
                    state.add_metric([name, st.value], 1.0 if st is run.state else 0.0)
                if run.model is not None:
                    for field, family in models.items():
                        value = getattr(run.model, field)
                        if value is not None:
                            family.add_metric([name], value)
                usage = engine.resources(name)
                if usage is not None:
                    used = Resources.model_validate(usage)
                    cpu.add_metric([name], used.cpu_seconds_total)
                    rss.add_metric([name], used.rss_bytes)
                    for index, size in (used.gpu_memory_bytes or {}).items():
                        gpu.add_metric([name, index], size)
        store_errors = CounterMetricFamily("logcast_store_write_errors", "Failed history writes")
        store_errors.add_metric([], engine.hub.store.stats.errors)
        yield from (lines, nbytes, dropped, lost, subs, restarts, state, rate, cpu, rss, gpu, store_errors)
        yield from models.values()


def render(engine: Engine) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    return generate_latest(registry)
