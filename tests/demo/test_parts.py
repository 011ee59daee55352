"""The demo's parts on their own: model choice, the private PostgreSQL, photo sources, output, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from core.sample_data import generate_photos

REPO = Path(__file__).resolve().parents[2]


def test_model_choice_is_the_settings_rule(settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The demo embeds with the model `make serve` will serve: the same rule (core.settings), unless --model."""
    from core.settings import load_settings
    from demo.cli import choose_model

    model, why = choose_model(settings, None)
    assert model == "efficientnet-lite0" and str(settings.resolved_model_weights) in why
    settings.resolved_model_weights.parent.mkdir(parents=True, exist_ok=True)
    settings.resolved_model_weights.write_bytes(b"checkpoint")
    assert choose_model(load_settings(), None)[0] == "places365-resnet50"
    assert choose_model(settings, "efficientnet-lite0") == ("efficientnet-lite0", "chosen with --model")
    monkeypatch.setenv("EMBEDDING_MODEL", "efficientnet-lite0")
    assert choose_model(load_settings(), None) == ("efficientnet-lite0", "set by EMBEDDING_MODEL")


def test_private_postgres_is_started_migrated_and_reused(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from demo.database import open_database

    notes: list[str] = []
    db = open_database(settings, tmp_path / "data", private=True, notes=notes)
    try:
        assert db.server is not None and "private PostgreSQL" in db.origin
        assert db.applied and any("created database" in n for n in notes)
        with psycopg.connect(db.conninfo) as conn:
            assert conn.execute("SELECT count(*) FROM images").fetchone() == (0,)
        again = open_database(settings, tmp_path / "data", private=True)
        assert again.applied == [] and again.server is not None and again.server.port == db.server.port
    finally:
        db.stop()
    assert not db.server.running()


@pytest.mark.samples
def test_photo_sources(tmp_path: Path) -> None:
    from demo.photos import PhotoError, find_sources, prepare_extras

    folder = tmp_path / "mixed"
    folder.mkdir()
    generate_photos(folder, 3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (folder / "readme.txt").write_text("x")
    source, skipped = find_sources(folder, None, tmp_path / "work")
    assert [p.name for p in skipped] == ["broken.jpg"] and len(source.files) == 3
    assert find_sources(folder, None, tmp_path / "work")[0].event_code == source.event_code  # stable event
    planted = prepare_extras(source, tmp_path / "work")
    assert len(planted.copies) == 3 and planted.query.is_file() and planted.query_original == source.files[1]
    assert [o for o, _ in planted.copies] == source.files and all(c.is_file() for _, c in planted.copies)
    assert len(planted.registered) == 3 + 2 + 1 and all(p.is_file() for p in planted.registered)
    assert planted.scene_upload.is_file() and planted.scene_upload not in planted.registered
    with pytest.raises(PhotoError, match="no image files"):
        find_sources(_empty(tmp_path), None, tmp_path / "w2")
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "a.png").write_bytes(b"nope")
    with pytest.raises(PhotoError, match="readable image"):
        find_sources(only_broken, None, tmp_path / "w3")


def _empty(tmp_path: Path) -> Path:
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_every_group_is_compared_with_the_truth() -> None:
    from demo.examples import compare_groups

    truth = [frozenset({"a.jpg", "a_copy.jpg"}), frozenset({"b.jpg", "b_copy.jpg"})]
    assert compare_groups(list(truth), truth, strict=True)[0]
    # One group of many different pictures (the old chain of "similar enough") fails, planted pairs or not.
    chain = frozenset({"a.jpg", "a_copy.jpg", "b.jpg", "c.jpg"})
    ok, verdict = compare_groups([chain, truth[1]], truth, strict=True)
    assert not ok and "missing a.jpg + a_copy.jpg" in verdict and "WRONG" in verdict
    assert not compare_groups([chain, truth[1]], truth, strict=False)[0]  # it mixes planted files: wrong anyway
    assert not compare_groups([truth[0]], truth, strict=True)[0]  # a planted pair not found
    extra = frozenset({"x.jpg", "y.jpg"})
    assert not compare_groups([*truth, extra], truth, strict=True)[0]  # sample photos hold no other copies
    ok, verdict = compare_groups([*truth, extra], truth, strict=False)  # a user's folder may
    assert ok and "1 more among your own photos" in verdict
    probe = frozenset({"x.jpg", "scene_probe.jpg"})  # but never with a planted file outside the truth
    assert not compare_groups([*truth, probe], truth, strict=False, planted=frozenset({"scene_probe.jpg"}))[0]


def test_compact_json_output() -> None:
    from demo.examples import dumps

    short = {"id": 1, "filename": "a.jpg"}
    assert dumps(short) == '{"id": 1, "filename": "a.jpg"}'
    long = {"groups": [{"images": [{"id": i, "code": "x" * 40} for i in range(3)], "score": 0.9}]}
    text = dumps(long)
    assert text.count("\n") >= 4 and all(len(line) <= 120 for line in text.splitlines())
    import json

    assert json.loads(text) == long


def test_bad_folder_is_a_clear_error(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "demo", str(tmp_path / "missing"), "--no-serve"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr
