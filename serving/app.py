"""The FastAPI application factory: routes, error handlers, limits, metrics, and the index watcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from core.settings import Settings, get_settings
from indexing.search import ann
from serving import errors
from serving.metrics import MetricsMiddleware
from serving.routes import api_router, pages
from serving.state import ServerState

DESCRIPTION = """Read-only similarity search over the published FAISS index of the served model.

The seed's routes keep their shapes (`GET /`, `POST /add_image`, `POST /search`,
`POST /extract_features`, `GET /stats`); search by image, by indexed image,
duplicate groups and checks, versions and Prometheus metrics are added.
Every error is JSON `{"detail": ..., "message": ...}` with a 4xx status
(503 while no index version is loaded).
"""


def _exact_openapi(app: FastAPI, settings: Settings) -> None:
    """The schema with what only this server knows (the model's vector length); built once, on first ask."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from serving.schemas import openapi_exact

            try:
                from embeddings.models import MODELS, parse_name

                dim: int | None = MODELS[parse_name(settings.embedding_model).model].dim
            except Exception:  # an unknown model name: the schema just does not pin the length
                dim = None
            app.openapi_schema = openapi_exact(generate(), dim)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    """A server for `settings` (default: the environment). The watcher starts with the app's lifespan."""
    settings = settings or get_settings()
    ann.one_thread_per_query()
    state = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await state.stop()

    # /docs and /redoc from the package's own copies of Swagger UI and ReDoc (FastAPI's default loads them
    # from a CDN: a blank page offline or behind a firewall).
    app = FastAPIOffline(title="Image similarity search", version="1.0.0", description=DESCRIPTION,
                         lifespan=lifespan, static_url="/docs-static")
    app.state.server = state
    _exact_openapi(app, settings)
    errors.install(app)
    app.include_router(api_router)
    app.include_router(pages.router)  # HTML pages for people (not in the OpenAPI schema): docs/api.md
    app.add_middleware(errors.BodyLimitMiddleware, limit=int(settings.max_upload_mb * 2**20))
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
