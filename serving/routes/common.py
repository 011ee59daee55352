"""OpenAPI error declarations shared by the routes (so the schema lists every status we answer)."""

from __future__ import annotations

from typing import Any

from serving.schemas import ErrorResponse

_ERR: dict[str, Any] = {"model": ErrorResponse}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}
_OS = "or the server is short of a resource (an OS error such as too many open files)"


def _unavailable(why: str) -> dict[int, dict[str, Any]]:
    return {503: {**_ERR, "description": f"{why}, {_OS}; Retry-After says when to retry",
                  "headers": _RETRY_AFTER}}


VALIDATION = {422: {**_ERR, "description": "invalid input (the message says which field and why)"}}
BODY_LIMIT = {413: {**_ERR, "description": "request body over MAX_UPLOAD_MB"}}
NO_INDEX = _unavailable("no index version loaded yet (the message says why)")
NOT_FOUND = {404: {**_ERR, "description": "unknown image"}}
# The /events/{event_code}/... routes: an event neither the served version nor the events table knows.
UNKNOWN_EVENT = {404: {**_ERR, "description": "unknown event"},
                 **_unavailable("no index loaded yet, or the database did not answer whether the event exists")}
UPLOAD = {
    413: {**_ERR, "description": "upload over MAX_UPLOAD_MB, or an image too large to decode (pixel or "
                                 "memory budget)"},
    415: {**_ERR, "description": "the file is not an image"},
    **_unavailable("no index loaded, the model unavailable, or every upload slot busy (UPLOAD_CONCURRENCY)"),
}
AUTH = {401: {**_ERR, "description": "X-API-Key missing"}, 403: {**_ERR, "description": "wrong API key"}}
CONFLICT = {409: {**_ERR, "description": "already registered with another filename"}}
DATABASE = _unavailable("the database is unavailable or did not answer in time")
RESOURCE = _unavailable("never for a request itself")
# The searches' headers saying deleted images may not all be filtered out (docs/api.md "Deleted images").
DELETED_FILTER = {
    "X-Deleted-Filter": {"description": "`skipped` when neither the server's set of deleted images (kept fresh by "
                                        "NOTIFY) nor the database could say which results were deleted",
                         "schema": {"type": "string"}},
    "X-Deleted-Filter-Age": {"description": "with `skipped`: deletions older than this many seconds were still "
                                            "filtered out (from the server's last confirmed set)",
                             "schema": {"type": "string"}},
}


def deleted_filter_headers(filtered: bool, age: float | None) -> dict[str, str] | None:
    """The DELETED_FILTER headers of one answer (None when every deletion was filtered out)."""
    if filtered:
        return None
    headers = {"X-Deleted-Filter": "skipped"}
    if age is not None:
        headers["X-Deleted-Filter-Age"] = f"{age:.1f}"
    return headers
