"""Fixtures for the duplicate decision: photo-free synthetic photos always, real ones when the sample-data folder
(SAMPLE_DATA_DIR) is there."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest
from PIL import Image

from tests.selection import reads_samples


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    import cv2

    cv2.setNumThreads(1)


@pytest.fixture(scope="session")
def synthetic_photos() -> list[Image.Image]:
    from duplicates import synthetic

    return synthetic.photos(4)


@pytest.fixture(scope="session")
def synthetic_scene_pairs() -> list[list[Image.Image]]:
    from duplicates import synthetic

    return synthetic.scene_groups(5, 2)


def _data() -> Path | None:
    from core.settings import sample_data_dir

    return sample_data_dir()


@pytest.fixture(scope="session")
@reads_samples
def real_photos() -> list[bytes]:
    """A few real photos (every 37th shared photo), or skip on a clone without sample data."""
    data = _data()
    photos = sorted((data / "photos").glob("*.jpg")) if data is not None and (data / "photos").is_dir() else []
    if not photos:
        pytest.skip("no sample photos (SAMPLE_DATA_DIR / ../shared/data)")
    return [p.read_bytes() for p in photos[3::37]]


@pytest.fixture(scope="session")
@reads_samples
def real_scene_pairs() -> list[tuple[str, bytes, bytes]]:
    """Every within-group pair of the shared same-scene photos, or skip."""
    data = _data()
    table = data / "scenes" / "groups.csv" if data is not None else None
    if table is None or not table.is_file():
        pytest.skip("no same-scene sample data (SAMPLE_DATA_DIR / ../shared/data/scenes)")
    groups: dict[str, list[str]] = {}
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault(row["group"], []).append(row["file"])
    return [(f"{a}|{b}", (table.parent / a).read_bytes(), (table.parent / b).read_bytes())
            for files in groups.values() for a, b in itertools.combinations(files, 2)]
