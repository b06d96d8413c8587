"""Processes: list, describe, start, stop, restart; the configuration (masked)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from logcast.engine import Engine
from logcast.samples import INTERVAL as SAMPLE_INTERVAL
from logcast.schemas import Config, Healthz, HostList, Process, ProcessList, Samples
from logcast.types import ProcessState
from logcast.web.routes.deps import EngineDep, Time, process_model, resolve

router = APIRouter()

# `response_model_exclude_unset`: fields a process does not have stay absent (`process_model`)


@router.get("/api/processes", tags=["processes"], response_model_exclude_unset=True)
async def list_processes(engine: EngineDep) -> ProcessList:
    return ProcessList(processes=[process_model(engine, name) for name in engine.processes.names()])


@router.get("/api/processes/{name}", tags=["processes"], response_model_exclude_unset=True)
async def get_process(name: str, engine: EngineDep) -> Process:
    return process_model(engine, resolve(engine, name))


async def _control(engine: Engine, name: str, action: str) -> Process:
    name = resolve(engine, name)
    if name not in engine.processes:
        raise HTTPException(404, f"unknown process {name!r}")
    if action == "start":
        state = engine.processes.info(name)["state"]
        if ProcessState(state).is_starting_or_up:
            raise HTTPException(409, f"{name} is already running")
        await engine.processes.start(name)
    elif action == "stop":
        await engine.processes.stop(name)
    else:
        await engine.processes.restart(name)
    return process_model(engine, name)


@router.post("/api/processes/{name}/start", tags=["processes"], response_model_exclude_unset=True)
async def start_process(name: str, engine: EngineDep) -> Process:
    return await _control(engine, name, "start")


@router.post("/api/processes/{name}/stop", tags=["processes"], response_model_exclude_unset=True)
async def stop_process(name: str, engine: EngineDep) -> Process:
    return await _control(engine, name, "stop")


@router.post("/api/processes/{name}/restart", tags=["processes"], response_model_exclude_unset=True)
async def restart_process(name: str, engine: EngineDep) -> Process:
    return await _control(engine, name, "restart")


@router.get("/api/hosts", tags=["processes"])
async def list_hosts(engine: EngineDep) -> HostList:
    return HostList(hosts=engine.hosts())


@router.get("/api/samples", tags=["processes"])
async def list_samples(engine: EngineDep, after: Time = None) -> Samples:
    """Each process's figures every 2 s over the last 15 minutes; `after` (unix time) gives
    only the newer ones, for a page that keeps its charts current."""
    return Samples.model_validate(
        {"interval": SAMPLE_INTERVAL, "processes": engine.samples.since(after or 0.0)}
    )


@router.get("/api/config", tags=["processes"])
async def get_config(engine: EngineDep) -> Config:
    path = engine.settings.path
    return Config(path=str(path) if path else None, processes=list(engine.configs().values()))


@router.get("/healthz", tags=["meta"])
async def healthz() -> Healthz:
    return Healthz(status="ok")
