"""Schemathesis hooks for tests/serving/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI schema says an upload is "a non-empty binary file, an image"; JSON
Schema cannot say "bytes that decode as an image", so positive data for
`format: binary` are real images here (PNG, JPEG, WebP, GIF, BMP, TIFF of
random sizes and colours). Likewise `/add_image` refers to an existing file
and event, which no schema can list: positive cases get the ones the test
made (SCHEMATHESIS_FILE_PATH, SCHEMATHESIS_EVENT_CODE). Negative cases are
left exactly as schemathesis made them.
"""

from __future__ import annotations

import io
import os

import schemathesis
from hypothesis import strategies as st
from schemathesis.transport.serialization import Binary


def _image(width: int, height: int, fmt: str, colour: tuple[int, int, int], grey: bool) -> Binary:
    from PIL import Image

    img = Image.new("L" if grey else "RGB", (width, height), colour[0] if grey else colour)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return Binary(buf.getvalue())


IMAGES = st.builds(_image, st.integers(1, 96), st.integers(1, 96),
                   st.sampled_from(["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]),
                   st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)), st.booleans())
schemathesis.openapi.format("binary", IMAGES)


@schemathesis.hook
def map_case(context, case):  # type: ignore[no-untyped-def]
    meta = getattr(case, "meta", None)
    positive = meta is not None and meta.generation.mode.is_positive
    if not positive:
        return case
    if case.operation.path == "/add_image" and isinstance(case.body, dict):
        case.body["file_path"] = os.environ["SCHEMATHESIS_FILE_PATH"]
        case.body["event_code"] = os.environ["SCHEMATHESIS_EVENT_CODE"]
    params = case.path_parameters or {}
    # Half the generated ids and events are swapped for indexed ones, so the answering paths get fuzzed
    # too (random ids are almost all 404, random events empty); the other half stay random.
    if "-" in str(params.get("id_or_code", "")):
        params["id_or_code"] = os.environ["SCHEMATHESIS_IMAGE_ID"]
    if str(params.get("event_code", "x"))[:1] in "01234567":
        params["event_code"] = os.environ["SCHEMATHESIS_EVENT_CODE"]
    return case
