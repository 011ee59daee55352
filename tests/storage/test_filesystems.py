"""The S3 filesystem's client: timestamps parsed by the standard library, as botocore would parse them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.utils import parse_timestamp

from storage.filesystems import _s3_session, _timestamp


@pytest.mark.parametrize("value", [
    "Mon, 07 Dec 2026 05:30:12 GMT",  # a header (GET, HEAD)
    "2026-12-07T05:30:12.000Z",  # a listing
    "2026-12-07T05:30:12+00:00",
    "2026-12-07T06:30:12.250+01:00",
])
def test_timestamps_are_the_instants_botocore_reads(value: str) -> None:
    got = _timestamp(value)
    assert got.tzinfo is not None and got == parse_timestamp(value)


@pytest.mark.parametrize("value", ["1796621412", 1796621412, "2026-12-07T05:30:12"])
def test_other_forms_go_to_botocore(value: object) -> None:
    """Epoch seconds, and an ISO time without a zone (botocore takes it as local time), are botocore's."""
    assert _timestamp(value) == parse_timestamp(value)


def test_the_session_parses_responses_with_it() -> None:
    factory = _s3_session().get_component("response_parser_factory")
    parser = factory.create_parser("rest-xml")
    assert parser._timestamp_parser is _timestamp
    assert _timestamp("Mon, 07 Dec 2026 05:30:12 GMT") == datetime(2026, 12, 7, 5, 30, 12, tzinfo=UTC)

