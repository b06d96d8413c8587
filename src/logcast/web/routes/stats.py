"""Figures per process and in total, and clearing a history (all of it, or what is older)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from logcast.engine import Engine
from logcast.query import Query as LogQuery
from logcast.schemas import Cleared, ManagerStats, ModelStats, ProcessStats, Stats, StoreStats
from logcast.web.routes.deps import EngineDep, resolve

router = APIRouter()


def process_stats(engine: Engine, name: str) -> ProcessStats:
    """The hub's figures of `name`'s log, with the state of a configured process (a process
    that is no longer configured has none: `state` stays unset, so absent on the wire)."""
    if name in engine.processes.names():
        return ProcessStats.model_validate(
            {**engine.hub.stats(name), "state": engine.processes.info(name)["state"]}
        )
    return ProcessStats.model_validate(engine.hub.stats(name))


@router.get("/api/logs/stats", tags=["logs"], response_model_exclude_unset=True)
async def log_stats(engine: EngineDep) -> Stats:
    """logcast's totals and per-process figures, and beside them the original manager's
    envelope (`success`, `stats`) that its tools read."""
    per = {name: process_stats(engine, name) for name in engine.hub.names()}
    store = engine.hub.store.stats
    model_stats = {
        name: ModelStats(log_count=await _retained(engine, name, s), subscriber_count=s.subscribers)
        for name, s in per.items()
    }
    subscribers = sum(s.subscribers for s in per.values())
    return Stats(
        total_logs=sum(s.lines for s in per.values()),
        total_bytes=sum(s.bytes for s in per.values()),
        subscribers=subscribers,
        dropped=sum(s.dropped for s in per.values()),
        lines_per_s=round(sum((s.lines_per_s for s in per.values()), 0.0), 2),
        processes=per,
        store=StoreStats(
            engine=engine.settings.storage.engine,
            written=store.written,
            errors=store.errors,
            last_error=store.last_error,
            pending=sum(s.pending for s in per.values()),
        ),
        success=True,
        stats=ManagerStats(
            total_models=len(per),
            total_log_entries=sum(m.log_count for m in model_stats.values()),
            total_subscribers=subscribers,
            model_stats=model_stats,
        ),
    )


async def _retained(engine: Engine, name: str, stats: ProcessStats) -> int:
    """How many records of `name` the history holds now (what a clear removes; status
    records included, as they are part of the history)."""
    last = stats.last_seq
    in_memory = stats.memory_lines
    first = (await engine.hub.store.meta(name)).first_seq
    if in_memory:
        first = min(first, last - in_memory + 1) if first else last - in_memory + 1
    if not first:
        return 0
    first = max(first, engine.hub.get(name).cleared_upto + 1)
    return max(0, last - first + 1)


@router.post("/api/logs/{alias}/clear", tags=["logs"])
async def clear_logs(
    alias: str,
    engine: EngineDep,
    keep_minutes: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
) -> Cleared:
    """Clear the history of a process, or (`keep_minutes=N`) only its records older than
    N minutes. Sequence numbers go on either way."""
    name = resolve(engine, alias)
    if keep_minutes is None:
        upto = await engine.clear(name)
        message = f"cleared the logs of {name}"
    else:
        cutoff = time.time() - keep_minutes * 60.0
        # the whole history may lie between now and the cutoff: look back as far as it goes
        older = await engine.hub.tail(name, 1, query=LogQuery(until=cutoff), scan=None)
        if older:
            upto = await engine.clear(name, upto=older[-1].seq)
        else:
            upto = engine.hub.get(name).cleared_upto
        message = f"cleared the logs of {name} older than {keep_minutes:g} minutes"
    return Cleared(
        success=True, message=message, cleared=True, process=name, upto=upto, keep_minutes=keep_minutes
    )
