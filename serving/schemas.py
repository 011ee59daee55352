"""Request and response bodies. The seed's shapes are kept field for field; extra fields are additive.

Request bodies are STRICT: a number is a JSON number ("0.5", true and "5"
are refused where numbers are expected), UUIDs are the canonical 8-4-4-4-12
hex form, unknown fields are refused where the seed had none. The OpenAPI
schema says exactly that (`openapi_exact` adds what only the running server
knows: the model's vector length), so a client generated from it sends
nothing the server refuses, and the server accepts everything it allows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

MAX_TOP_K = 1000
# Enough for any model we serve (2048-d) with room; a bigger body is refused before numpy sees it.
MAX_VECTOR_LEN = 8192
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# An image id (1 to 12 digits) or an image code (a UUID).
ID_OR_CODE_PATTERN = r"^(?:[0-9]{1,12}|" + UUID_PATTERN[1:-1] + r")$"
# What a pattern means, for readable 422 messages (serving.errors).
PATTERN_MEANING = {UUID_PATTERN: "a UUID (8-4-4-4-12 hex digits)",
                   r"^(?:" + UUID_PATTERN[1:-1] + r")?$": "a UUID (8-4-4-4-12 hex digits) or empty",
                   ID_OR_CODE_PATTERN: "an image id (integer) or an image code (UUID)"}


def _integral(value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer; strict pydantic does not. 5.0 -> 5, anything else untouched
    (so "5", true and 5.5 still fail the strict int check)."""
    if type(value) is float and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


# Makes a strict int field take a JSON integer written 5.0; never a string, a boolean or a fraction.
# It goes AFTER the field's bounds in Annotated[...], or pydantic's JSON schema loses them.
AS_INT = BeforeValidator(_integral)
# An optional event filter in a multipart form: forms cannot send null, an empty value means "no filter".
OPTIONAL_UUID_PATTERN = r"^(?:" + UUID_PATTERN[1:-1] + r")?$"


def _canonical_uuid(value: str) -> str:
    return str(uuid.UUID(value))


# A UUID as clients send it (canonical form only), handed to the code as its lower-case string.
UuidStr = Annotated[str, Field(pattern=UUID_PATTERN, json_schema_extra={"format": "uuid"}),
                    AfterValidator(_canonical_uuid)]


# Vector values: finite, within +-1e6 (so float32 norms neither overflow nor underflow), and at least one
# of magnitude >= 1e-6 (so the vector has a direction). Seed clients send unit vectors: far inside.
VECTOR_ABS_MAX = 1e6
VECTOR_MIN_PEAK = 1e-6
VectorValue = Annotated[float, Field(ge=-VECTOR_ABS_MAX, le=VECTOR_ABS_MAX, allow_inf_nan=False)]
# The same "has a direction" rule in JSON Schema words (openapi_exact puts it on every vector).
VECTOR_CONTAINS = {"anyOf": [{"minimum": VECTOR_MIN_PEAK}, {"maximum": -VECTOR_MIN_PEAK}]}


def check_direction(values: list[float] | None) -> list[float] | None:
    """A vector of only (near-)zeros has no direction to search in."""
    if values is not None and not any(abs(v) >= VECTOR_MIN_PEAK for v in values):
        raise ValueError(f"vector has zero length: at least one value must be {VECTOR_MIN_PEAK:g} or more "
                         "in magnitude")
    return values


def check_text(value: str | None) -> str | None:
    """JSON escapes can smuggle lone surrogates, which no database column can store."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    event_code: UuidStr | None = Field(None, description="only images of this event")


class SearchRequest(BaseModel):
    """The seed's `/search` body, plus an optional minimum score."""

    model_config = ConfigDict(extra="forbid", strict=True)

    vector: list[VectorValue] = Field(..., min_length=1, max_length=MAX_VECTOR_LEN,
                                      description="the served model's dimension; normalised server-side")
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K), AS_INT] = 10
    filters: SearchFilters | None = None
    min_score: float | None = Field(None, ge=-1.0, le=1.0, allow_inf_nan=False,
                                    description="drop results below this cosine similarity")

    _direction = field_validator("vector")(check_direction)


class SearchHit(BaseModel):
    """One result: the seed's four fields plus the image code."""

    id: int
    code: str | None
    filename: str | None
    similarity_score: float
    event_code: str | None


class AddImageMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    width: Annotated[int, Field(ge=1, le=1_000_000), AS_INT] | None = None
    height: Annotated[int, Field(ge=1, le=1_000_000), AS_INT] | None = None
    # 2**53 - 1: exact in a JSON double and a JavaScript number (9 PB; images.file_size is BIGINT).
    file_size: Annotated[int, Field(ge=0, le=2**53 - 1), AS_INT] | None = None
    mime_type: str | None = Field(None, max_length=100, pattern=r"^[^\x00]*$")

    _text = field_validator("mime_type")(check_text)


class AddImageRequest(BaseModel):
    """The seed's `/add_image` body. `vector` is validated but never indexed: the pipeline embeds the file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    filename: str = Field(..., min_length=1, max_length=255, pattern=r"^[^\x00]+$")
    file_path: str = Field(..., min_length=1, max_length=500, pattern=r"^[^\x00]+$",
                           description="relative to IMAGE_ROOT; must name an existing file there")
    event_code: UuidStr = Field(..., description="an existing event's code")
    vector: list[VectorValue] | None = Field(None, min_length=1, max_length=MAX_VECTOR_LEN)
    metadata: AddImageMetadata | None = None

    _direction = field_validator("vector")(check_direction)
    _text = field_validator("filename", "file_path")(check_text)


PipelineStatusName = Literal["queued", "embedded", "indexed", "failed"]


class AddImageResponse(BaseModel):
    """The seed's `{id, faiss_index, message}` plus the row's code and pipeline status."""

    id: int
    code: str | None = Field(..., description="NULL in EMS rows made without one")
    faiss_index: int | None = None
    message: str = "success"
    status: PipelineStatusName = Field("queued", description="queued for a new row: the pipeline embeds and "
                                       "indexes the file on its next run (GET /images/{id} follows it)")
    event_code: str
    created: bool = Field(..., description="false: this (event_code, file_path) was registered before and that "
                          "row is returned (retrying is safe)")
    vector_ignored: bool = Field(False, description="a client vector was sent: validated, not indexed")


class ImageStatusResponse(BaseModel):
    """An `images` row and where the pipeline is with it."""

    id: int
    code: str | None
    event_code: str
    filename: str
    file_path: str
    file_size: int | None
    mime_type: str | None
    width: int | None
    height: int | None
    faiss_index: int | None
    created_at: str | None = Field(..., description="images.created_at as stored: ISO 8601, no offset when the "
                                   "column is a TIMESTAMP WITHOUT TIME ZONE (the EMS DDL)")
    status: PipelineStatusName = Field(..., description="queued (not embedded yet), embedded (not in the served "
                                       "index yet), indexed (searchable now), failed (see error)")
    model_version: str | None = Field(..., description="the served model the status is about")
    index_version: int | None = Field(None, description="the served index version holding it (status indexed)")
    error: str | None = Field(None, description="why embedding failed (status failed)")
    attempts: int | None = None
    embedded_at: datetime | None = None


class HealthResponse(BaseModel):
    status: str
    total_vectors: int
    index_version: int | None = None
    model_version: str | None = None
    index_type: str | None = None
    degraded: str | None = Field(None, description="why the served version is not CURRENT's (fallback in use)")


class FeaturesResponse(BaseModel):
    vector: list[float]
    processing_time: float
    model: str
    model_version: str
    dim: int


class DuplicateImage(BaseModel):
    id: int
    code: str | None
    filename: str | None


class DuplicateGroup(BaseModel):
    images: list[DuplicateImage] = Field(..., description="images[0] is the reference; every other image was "
                                         "verified as a copy of it (never a chain of similar pairs)")
    score: float = Field(..., description="the weakest verdict score between the reference and a member (0..1)")


class DuplicatesResponse(BaseModel):
    event_code: str
    groups: list[DuplicateGroup]
    images_checked: int = Field(..., description="images of the event in the served index version")
    images_unverifiable: int = Field(..., description="of those, images without a duplicate fingerprint "
                                     "(embedded before fingerprints existed): never in a group")
    index_version: int


class ShotImage(DuplicateImage):
    copies: list[int] = Field(default_factory=list, description="ids of this shot's copies, collapsed into it")


class ShotGroup(BaseModel):
    images: list[ShotImage] = Field(..., description="images[0] is the reference; each other image is another "
                                    "shot of its scene")
    score: float = Field(..., description="the weakest verdict score between the reference and a member (0..1)")


class SimilarShotsResponse(BaseModel):
    event_code: str
    groups: list[ShotGroup]
    images_checked: int
    images_unverifiable: int
    index_version: int


class Verdict(BaseModel):
    score: float = Field(..., description="0..1: pixel agreement for a copy, geometric support for the same "
                         "scene, the cosine for related (docs/duplicates.md)")
    reason: str = Field(..., description="the evidence, e.g. 'sha256 equal' or 'inliers 143, agree 0.97'")


class VerifiedHit(SearchHit):
    """A /search hit plus what verification decided about it."""

    relation: Literal["copy", "same_scene", "related"] = Field(
        ..., description="copy: the same photograph (the only duplicate); same_scene: another shot; related")
    verdict: Verdict


class DuplicateCheckResponse(BaseModel):
    duplicate: bool = Field(..., description="true only when a match is a copy")
    matches: list[VerifiedHit] = Field(..., description="copies first, then same-scene shots, then related")
    event_code: str
    index_version: int


class SwapState(BaseModel):
    swaps: int
    failures: int
    last_error: str | None
    failed_versions: dict[str, str]
    last_swap_at: datetime | None


class IntegrityState(BaseModel):
    checks: int
    failures: int
    last_check_at: datetime | None
    last_problem: str | None = Field(None, description="None when the last re-check found the served files sound")


class DeletedFilterState(BaseModel):
    """The server's set of deleted images of the served version (serving/deleted.py)."""

    listening: bool = Field(description="the NOTIFY listener is connected")
    version: int | None = Field(description="the version the set was built for")
    deleted_known: int | None = Field(description="ids of that version no longer in `images`")
    age_seconds: float | None = Field(description="since the listener last confirmed the set complete")
    fresh: bool = Field(description="searches filter from the set alone (no query per search)")
    notifications: int
    catch_ups: int = Field(description="anti-joins run (per version, (re)connect, TRUNCATE, periodic)")
    database_fallbacks: int = Field(description="filter calls that asked the database (set stale or not built)")


class StatsResponse(BaseModel):
    total_vectors_faiss: int
    total_images_db: int | None
    index_size_mb: float
    status: str
    index_version: int | None
    model: str
    model_version: str | None
    index_type: str | None
    embedded: int | None
    failed: int | None
    database: str
    deleted_filter: DeletedFilterState | None = None
    swap: SwapState
    served_from: str | None = Field(None, description="store (DATA_DIR/indexes) or backup (BACKUP_DIR)")
    current_on_disk: int | None = Field(None, description="the version CURRENT names (None: missing or damaged)")
    current_problem: str | None = Field(None, description="what is wrong with CURRENT, if anything")
    degraded: str | None = Field(None, description="why the served version is not CURRENT's (fallback in use), or "
                                 "that an object-store DATA_DIR does not answer (served from the local cache)")
    storage_problem: str | None = Field(None, description="object-store DATA_DIR only: why the last pull failed")
    integrity: IntegrityState | None = None


class VersionInfo(BaseModel):
    version: int
    count: int | None = None
    index_type: str | None = None
    created_at: str | None = None
    published_at: str | None = None
    status: str | None = None
    current: bool = False
    served: bool = False
    backup: bool = Field(False, description="BACKUP_DIR holds a copy")
    error: str | None = None


class VersionsResponse(BaseModel):
    model_version: str | None
    current: int | None
    served: int | None
    served_from: str | None = None
    current_problem: str | None = None
    degraded: str | None = None
    versions: list[VersionInfo]


class ErrorResponse(BaseModel):
    detail: str
    message: str
    errors: list[dict[str, Any]] | None = None


def openapi_exact(schema: dict[str, Any], dim: int | None) -> dict[str, Any]:
    """The generated OpenAPI schema, told what only the running server knows or pydantic cannot say.

    - query vectors have exactly the served model's `dim` values (when the model is known) and a direction;
    - uploaded files are non-empty binary parts (an image the server can decode: JPEG, PNG, WebP, ...).
    """
    components = schema.get("components", {}).get("schemas", {})
    for name in ("SearchRequest", "AddImageRequest"):
        vector = components.get(name, {}).get("properties", {}).get("vector")
        for option in [vector, *((vector or {}).get("anyOf") or [])]:
            if isinstance(option, dict) and option.get("type") == "array":
                option["contains"] = VECTOR_CONTAINS
                if dim:
                    option["minItems"] = option["maxItems"] = dim
    for name, component in components.items():
        if not name.startswith("Body_"):
            continue
        for field in component.get("properties", {}).values():
            _drop_null(field)  # a form cannot send null: an optional field is just left out
        part = component.get("properties", {}).get("file")
        if isinstance(part, dict):
            part.update(type="string", format="binary", minLength=1, contentMediaType="application/octet-stream")
            part.setdefault("description", "an image file (JPEG, PNG, WebP, GIF, TIFF, BMP...), not empty")
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                _drop_null(parameter.get("schema", {}))  # a query string cannot send null either
    return schema


def _drop_null(field: dict[str, Any]) -> None:
    """`anyOf: [X, {type: null}]` -> X, in place (keeping title, description, format)."""
    options = field.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        kept = next(o for o in options if o != {"type": "null"})
        del field["anyOf"]
        field.update({k: v for k, v in kept.items() if k not in field or k == "type"})
