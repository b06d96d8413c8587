"""The HTTP routes. None spawns anything from request data: the API acts only on
configured processes, found by name or alias, and answers with models of
`logcast.schemas` (so `/docs` is typed)."""

from fastapi import APIRouter, Depends

from logcast.web.routes import history, llm_manager, processes, stats, streaming
from logcast.web.routes.deps import clean_text
from logcast.web.routes.history import _page
from logcast.web.routes.streaming import _error_frame, document_streams

router = APIRouter(dependencies=[Depends(clean_text)])
for part in (processes, history, streaming, stats, llm_manager):
    router.include_router(part.router)

__all__ = ["_error_frame", "_page", "document_streams", "router"]
