"""Request and response bodies. The seed's shapes are kept field for field; extra fields are additive."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOP_K = 1000
# Enough for any model we serve (2048-d) with room; a bigger body is refused before numpy sees it.
MAX_VECTOR_LEN = 8192


def check_finite(values: list[float]) -> list[float]:
    """Python's JSON parser accepts NaN and Infinity literals; a query vector must not contain them."""
    for i, v in enumerate(values):
        if not math.isfinite(v) or abs(v) > 3.4e38:
            raise ValueError(f"vector[{i}] is {v!r}: every value must be a finite float32")
    return values


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_code: uuid.UUID | None = Field(None, description="only images of this event")


class SearchRequest(BaseModel):
    """The seed's `/search` body, plus an optional minimum score."""

    vector: list[float] = Field(..., min_length=1, max_length=MAX_VECTOR_LEN,
                                description="the served model's dimension; normalised server-side")
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)
    filters: SearchFilters | None = None
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description="drop results below this cosine similarity")

    _finite = field_validator("vector")(check_finite)


class SearchHit(BaseModel):
    """One result: the seed's four fields plus the image code."""

    id: int
    code: str | None
    filename: str | None
    similarity_score: float
    event_code: str | None


class AddImageMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    width: int | None = Field(None, ge=1, le=1_000_000)
    height: int | None = Field(None, ge=1, le=1_000_000)
    file_size: int | None = Field(None, ge=0, le=2**31 - 1)
    mime_type: str | None = Field(None, max_length=100)


class AddImageRequest(BaseModel):
    """The seed's `/add_image` body. `vector` is validated but never indexed: the pipeline embeds the file."""

    filename: str = Field(..., min_length=1, max_length=255)
    file_path: str = Field(..., min_length=1, max_length=500, description="relative to IMAGE_ROOT")
    event_code: uuid.UUID
    vector: list[float] | None = Field(None, max_length=MAX_VECTOR_LEN)
    metadata: AddImageMetadata | None = None

    @field_validator("vector")
    @classmethod
    def _finite(cls, v: list[float] | None) -> list[float] | None:
        return None if v is None else check_finite(v)

    @field_validator("filename", "file_path")
    @classmethod
    def _no_nul(cls, v: str) -> str:
        if "\x00" in v:
            raise ValueError("must not contain NUL characters")
        return v


class AddImageResponse(BaseModel):
    id: int
    code: str
    faiss_index: int | None = None
    message: str = "success"
    status: str = Field("queued", description="the pipeline embeds and indexes the file on its next run")
    event_code: str
    vector_ignored: bool = Field(False, description="a client vector was sent: validated, not indexed")


class HealthResponse(BaseModel):
    status: str
    total_vectors: int
    index_version: int | None = None
    model_version: str | None = None
    index_type: str | None = None


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
    swap: SwapState


class VersionInfo(BaseModel):
    version: int
    count: int | None = None
    index_type: str | None = None
    created_at: str | None = None
    published_at: str | None = None
    status: str | None = None
    current: bool = False
    served: bool = False
    error: str | None = None


class VersionsResponse(BaseModel):
    model_version: str | None
    current: int | None
    served: int | None
    versions: list[VersionInfo]


class ErrorResponse(BaseModel):
    detail: str
    message: str
    errors: list[dict[str, Any]] | None = None
