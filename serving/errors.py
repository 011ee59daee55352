"""Every error leaves as JSON `{"detail": str, "message": str}` with the right status; never a bare 500.

FastAPI's own validation errors become 422 with one readable line (plus the
per-field list under `errors`); HTTP errors keep their status. A body bigger
than MAX_UPLOAD_MB is cut off with 413 while it streams in. An OS error or
memory exhaustion (a full disk, too many open files) is the server's transient
trouble: 503 with Retry-After. Messages never show the server's absolute paths
(IMAGE_ROOT, DATA_DIR, the index store): `redact` names them instead.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("serving.errors")


def error_body(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": message, "message": message, **extra}, status_code=status, headers=headers)


_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\"():,;]+/)+([^\s/'\"():,;]*)")


def redact(text: str, settings: Any = None) -> str:
    """`text` with the server's folders named (`<IMAGE_ROOT>/a.jpg`) and any other absolute path on this
    machine cut to its last part (`…/index.faiss`): an error tells what failed, not where the server lives.
    An object-store IMAGE_ROOT or DATA_DIR is named the same way (its URL and the `bucket/prefix` keys an
    S3 client prints), and the object-store credentials of the settings never show."""
    roots: dict[str, str] = {}
    if settings is not None:
        for name, location in (("IMAGE_ROOT", settings.image_location), ("DATA_DIR", settings.data_location)):
            if location.is_local:
                for form in {str(location.path), str(location.path.resolve())}:
                    roots[form] = f"<{name}>"
            else:
                roots[location.url] = roots[location.root] = f"<{name}>"
        for form in {str(settings.resolved_data_dir), str(Path(settings.resolved_data_dir).resolve())}:
            roots.setdefault(form, "<DATA_DIR>")  # a remote DATA_DIR's local mirror
    for root in sorted(roots, key=len, reverse=True):
        text = _replace_root(text, root, roots[root])
    for secret in _secrets(settings):
        text = text.replace(secret, "<redacted>")

    def cut(match: re.Match[str]) -> str:
        top = match.group(0).split("/")[1]
        return f"…/{match.group(1)}" if os.path.isdir(f"/{top}") else match.group(0)

    return _ABSOLUTE.sub(cut, text)


def _replace_root(text: str, root: str, name: str) -> str:
    """`root` replaced by `name` where it stands as a whole path (not `bucket` inside `mybucket-old/`)."""
    return re.sub(rf"(?<![\w.~-]){re.escape(root)}(?![\w.~-])", lambda _: name, text)


def _secrets(settings: Any) -> list[str]:
    """The object-store key and secret of the settings (never shown in an error)."""
    if settings is None:
        return []
    found = []
    secret = getattr(settings, "aws_secret_access_key", None)
    if secret is not None:
        found.append(secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret))
    found.append(getattr(settings, "aws_access_key_id", None) or "")
    return [s for s in found if len(s) >= 4]


def _settings(request: Request) -> Any:
    server = getattr(request.app.state, "server", None)
    return getattr(server, "settings", None)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")] or [str(p) for p in loc]
    return ".".join(parts)


def _summary(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = _loc(first.get("loc", ()))
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return f"body is not valid JSON: {first.get('ctx', {}).get('error', msg)}"
    if first.get("type") == "missing":
        msg = "field required"
    if first.get("type") == "string_pattern_mismatch":
        from serving.schemas import PATTERN_MEANING

        pattern = str(first.get("ctx", {}).get("pattern", ""))
        if pattern in PATTERN_MEANING:
            msg = f"must be {PATTERN_MEANING[pattern]}, got {str(first.get('input'))[:64]!r}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


async def validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errs = list(exc.errors())
    plain = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
             for e in errs[:20]]
    return JSONResponse({"detail": _summary(errs), "message": _summary(errs), "errors": plain}, status_code=422)


async def http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = redact(exc.detail if isinstance(exc.detail, str) else str(exc.detail), _settings(request))
    status = exc.status_code
    if status == 400:
        # Our routes never answer 400; the framework does when a body cannot be parsed at all (bytes that
        # are not UTF-8 JSON, broken multipart). That is invalid input like any other: 422, as documented.
        status, message = 422, f"the request body cannot be parsed ({message})"
    return JSONResponse({"detail": message, "message": message}, status_code=status,
                        headers=getattr(exc, "headers", None))


async def resource_handler(request: Request, exc: Exception) -> JSONResponse:
    """OSError/MemoryError: not the client's fault and usually passing; 503 + Retry-After, logged."""
    log.warning("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
    why = getattr(exc, "strerror", None) or type(exc).__name__
    message = f"the server could not complete the request ({why}); retry shortly"
    return error_body(503, message, headers={"Retry-After": "1"})


def _internal() -> JSONResponse:
    message = "internal error; the server log has the details"
    return error_body(500, message)


async def unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _internal()


class CatchAllMiddleware:
    """The last net: an unexpected exception becomes JSON and the keep-alive connection survives
    (Starlette's own handler re-raises after answering, and uvicorn then resets the connection)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # half an answer is out: nothing better than to end it
                return
            await _internal()(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(OSError, resource_handler)
    app.add_exception_handler(MemoryError, resource_handler)
    app.add_exception_handler(Exception, unexpected_handler)
    app.add_middleware(CatchAllMiddleware)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the {limit / 2**20:g} MB limit (MAX_UPLOAD_MB)")


class BodyLimitMiddleware:
    """Refuse bodies over `limit` bytes: at once from Content-Length, else while chunks arrive."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    # No "Connection: close": clients still sending (Node's fetch) would see a broken
                    # pipe instead of this answer; uvicorn discards the unread body.
                    response = error_body(413, str(BodyTooLarge(self.limit).detail))
                    await response(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)

