"""Route dependencies: the server state, the served index (or 503), the API key, id/UUID parameters.

The parameter types below carry their pattern into the OpenAPI schema, so the
schema says exactly which ids and codes the routes accept.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Path, Query, Request
from fastapi.security import APIKeyHeader

from serving.database import DatabaseDown
from serving.schemas import ID_OR_CODE_PATTERN, OPTIONAL_UUID_PATTERN, UUID_PATTERN
from serving.served import ServedIndex
from serving.state import ServerState

_UUID_SCHEMA = {"format": "uuid"}
EventCodePath = Annotated[str, Path(pattern=UUID_PATTERN, json_schema_extra=_UUID_SCHEMA,
                                    description="the event's code (UUID)")]
EventCodeQuery = Annotated[str | None, Query(pattern=UUID_PATTERN, json_schema_extra=_UUID_SCHEMA,
                                             description="only images of this event (UUID)")]
EventCodeForm = Annotated[str | None, Form(pattern=OPTIONAL_UUID_PATTERN,
                                           description="only images of this event (UUID; empty: all)")]
IdOrCodePath = Annotated[str, Path(pattern=ID_OR_CODE_PATTERN,
                                   description="an image id (integer) or an image code (UUID)")]


async def get_state(request: Request) -> ServerState:
    """Async on purpose: FastAPI runs plain `def` dependencies in a worker thread, a costly hop per request."""
    return request.app.state.server  # type: ignore[no-any-return]


State = Annotated[ServerState, Depends(get_state)]


async def get_served(state: State) -> ServedIndex:
    """The version this request uses from start to end (taken once: a swap never changes it mid-request)."""
    served = state.holder.current
    if served is None:
        raise HTTPException(503, f"no index loaded: {state.holder.reason or 'loading'}",
                            headers={"Retry-After": str(max(1, int(state.settings.swap_poll_seconds)))})
    return served


Served = Annotated[ServedIndex, Depends(get_served)]


# Declared as an OpenAPI security scheme, so clients and fuzzers know how the write routes authenticate.
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="API_KEY, when the server sets one")


async def require_api_key(state: State, x_api_key: Annotated[str | None, Depends(_API_KEY)] = None) -> None:
    """Write routes need X-API-Key when API_KEY is set: 401 without one, 403 with a wrong one."""
    expected = state.settings.api_key
    if not expected:
        return
    if not x_api_key:
        raise HTTPException(401, "this route needs the X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    if not secrets.compare_digest(x_api_key.encode(), expected.encode()):
        raise HTTPException(403, "wrong API key")


def parse_event_code(event_code: str) -> str:
    """A canonical lower-case UUID string, or 422 (the parameter types above already check the form)."""
    try:
        return str(uuid.UUID(event_code))
    except (ValueError, AttributeError, TypeError):
        raise HTTPException(422, f"event_code {event_code[:64]!r} is not a UUID") from None


async def known_event(event_code: EventCodePath, state: State, served: Served) -> str:
    """The event's canonical code for the /events/{event_code}/... routes; 404 for an event nobody knows.

    An event with images in the served version is known without a query; otherwise the EMS `events`
    table decides (an event with no photo indexed yet answers 200 with nothing found). A database that
    does not answer then gives 503: the same unknown code never answers 200 one minute and 404 the next.
    """
    event = parse_event_code(event_code)
    if served.loaded.has_event(event):
        return event
    try:
        found = await state.db.fetch("SELECT 1 FROM events WHERE code = %s::uuid", (event,))
    except DatabaseDown as exc:
        raise HTTPException(503, f"database unavailable, cannot tell whether event {event} exists: {exc}",
                            headers={"Retry-After": "1"}) from None
    if not found:
        raise HTTPException(404, f"no event {event}")
    return event


KnownEvent = Annotated[str, Depends(known_event)]


def resolve_image(served: ServedIndex, id_or_code: str) -> int:
    """An image id from `123` or a UUID code; 422 for neither, 404 when the index does not have it."""
    text = id_or_code.strip()
    if text.isdigit() and len(text) <= 12:
        image_id = int(text)
        if not served.has(image_id):
            raise HTTPException(404, f"image {image_id} is not in index version {served.version} "
                                     "(unknown, deleted, or not embedded yet)")
        return image_id
    try:
        code = str(uuid.UUID(text))
    except ValueError:
        raise HTTPException(422, f"{text[:64]!r} is neither an image id (integer) nor an image code (UUID)") from None
    image_id = served.id_for_code(code)
    if image_id is None:
        raise HTTPException(404, f"image {code} is not in index version {served.version} "
                                 "(unknown, deleted, or not embedded yet)")
    return image_id
