"""One router per resource; `api_router` gathers them (FastAPI full-stack-template layout)."""

from fastapi import APIRouter

from serving.routes import duplicates, features, health, images, metrics, search, stats

api_router = APIRouter()
for module in (health, search, images, features, duplicates, stats, metrics):
    api_router.include_router(module.router)

__all__ = ["api_router"]
