"""OpenAPI error declarations shared by the routes (so the schema lists every status we answer)."""

from __future__ import annotations

from typing import Any

from serving.schemas import ErrorResponse

_ERR: dict[str, Any] = {"model": ErrorResponse}

VALIDATION = {422: {**_ERR, "description": "invalid input (the message says which field and why)"}}
NO_INDEX = {503: {**_ERR, "description": "no index version loaded yet (the message says why)"}}
NOT_FOUND = {404: {**_ERR, "description": "unknown image"}}
UPLOAD = {
    413: {**_ERR, "description": "upload over MAX_UPLOAD_MB, or an image too large to decode (bomb guard)"},
    415: {**_ERR, "description": "the file is not an image"},
}
AUTH = {401: {**_ERR, "description": "X-API-Key missing"}, 403: {**_ERR, "description": "wrong API key"}}
CONFLICT = {409: {**_ERR, "description": "already registered with another filename"}}
DATABASE = {503: {**_ERR, "description": "the database is unavailable"}}
