"""The routes of the LLM manager logcast replaces, so that its clients work unchanged:
`/v1/models`, `/health`, `/api/models/{alias}/start|stop` and its log stream."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response

from logcast.engine import Engine
from logcast.schemas import ErrorEvent, Health, Model, ModelAction, ModelError, ModelList
from logcast.types import ProcessState
from logcast.web.direct import body_of
from logcast.web.routes.deps import Count, EngineDep, lookup, process_model, resolve
from logcast.web.routes.streaming import SSE_DOC, resume_point
from logcast.web.streams import BoundedSSEResponse, sse_body

STARTED_AT = int(time.time())  # `created` of a model that has not run yet

router = APIRouter()


@router.get(
    "/api/models/{alias}/logs/stream",
    tags=["llm-manager"],
    responses={**SSE_DOC, 503: {"model": ErrorEvent, "description": "The model is not running"}},
)
async def stream_model_logs(
    request: Request,
    alias: str,
    engine: EngineDep,
    after: Count = None,
    lines: Count = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The LLM manager's route: 503 + Retry-After while the model is not running; history, one
    historical_complete, realtime; `stream_end` when the model stops."""
    alias = resolve(engine, alias)
    state = ProcessState(engine.processes.info(alias)["state"]) if alias in engine.processes.names() else None
    if state is None or not state.is_starting_or_up:
        problem = ErrorEvent(
            type="error", message=f"model {alias!r} is not running (state: {state or 'unknown'})"
        )
        return JSONResponse(
            problem.model_dump(mode="json"),
            status_code=503,
            headers={"Retry-After": "2"},
        )
    sub = await engine.hub.subscribe(alias, after=resume_point(after, last_event_id_header), lines=lines)

    def lost() -> str | None:
        """Several hosts: no stop record will come from a host that is lost."""
        info = engine.processes.info(alias)
        if info.get("state") != ProcessState.UNKNOWN.value:
            return None
        return f"its host {info.get('host')!r} is lost (no heartbeat for 10 s)"

    return BoundedSSEResponse(
        sse_body(
            engine.hub, sub, engine.shutdown, end_on_stop=True, direct=body_of(request.scope), lost=lost
        ),
        on_close=sub.close,
    )


@router.get("/v1/models", tags=["llm-manager"])
async def list_models(engine: EngineDep) -> ModelList:
    """Every configured process as an OpenAI-style model; `aliases` holds its own name
    first, then its configured aliases (the LLM manager's terminal tool looks for its name in there)."""
    data = []
    for name, config in engine.configs().items():
        info = engine.processes.info(name)
        started = info.get("started_at")
        data.append(
            Model(
                id=name,
                object="model",
                created=int(started) if started else STARTED_AT,
                owned_by="logcast",
                aliases=list(dict.fromkeys((name, *config.aliases))),
                state=info["state"],
            )
        )
    return ModelList(object="list", data=data)


@router.get("/health", tags=["llm-manager"])
async def health(engine: EngineDep) -> Health:
    """The original manager's health: needs the token like the rest of the API (unlike
    `/healthz`). `running_models` counts the processes that run (running or ready)."""
    states = [ProcessState(engine.processes.info(name)["state"]) for name in engine.processes.names()]
    return Health(status="healthy", models_count=len(states), running_models=sum(s.is_up for s in states))


def _model(engine: Engine, alias: str) -> str | JSONResponse:
    name = lookup(engine, alias)
    if name is None or name not in engine.processes:
        message = f"unknown model {alias!r}"
        unknown = ModelError(success=False, message=message, detail=message)
        return JSONResponse(unknown.model_dump(mode="json"), status_code=404)
    return name


MODEL_DOC: dict[int | str, dict[str, Any]] = {404: {"model": ModelError, "description": "Unknown model"}}


def _model_answer(success: bool, message: str, engine: Engine, name: str) -> JSONResponse:
    state = engine.processes.info(name)["state"]
    answer = ModelAction(success=success, message=message, process=name, state=state)
    return JSONResponse(answer.model_dump(mode="json"))


@router.post(
    "/api/models/{alias}/start", tags=["llm-manager"], response_model=ModelAction, responses=MODEL_DOC
)
async def start_model(alias: str, engine: EngineDep) -> Response:
    """`{"success", "message"}` as the original answered, plus `process` and `state`."""
    name = _model(engine, alias)
    if isinstance(name, JSONResponse):
        return name
    if ProcessState(engine.processes.info(name)["state"]).is_starting_or_up:
        success, message = True, f"{name} is already running"
    else:
        await engine.processes.start(name)
        info = process_model(engine, name)
        success = info.state.is_alive
        message = f"{name} started" if success else f"{name} did not start ({info.state})"
        if not success and info.last_error:
            message += f": {info.last_error}"
    return _model_answer(success, message, engine, name)


@router.post(
    "/api/models/{alias}/stop", tags=["llm-manager"], response_model=ModelAction, responses=MODEL_DOC
)
async def stop_model(alias: str, engine: EngineDep) -> Response:
    name = _model(engine, alias)
    if isinstance(name, JSONResponse):
        return name
    stopped = await engine.processes.stop(name)
    message = f"{name} stopped" if stopped else f"{name} was not running"
    return _model_answer(True, message, engine, name)
