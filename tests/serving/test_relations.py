"""Duplicate fingerprints from the pipeline to the server: stored beside the vectors, found per index version
(also after compaction), and images embedded before fingerprints existed are unverifiable, never copies."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq


def test_pipeline_stores_a_fingerprint_beside_each_vector(base) -> None:
    from psycopg.conninfo import make_conninfo

    from duplicates.fingerprint import FINGERPRINT_VERSION, Fingerprint
    from embeddings.dataset import COLUMNS, list_parts
    from tests.serving.conftest import settings_for

    settings = settings_for(make_conninfo(base.admin, dbname=base.dbname), base.data_dir, base.image_root)
    parts = list_parts(settings, base.model_version)
    table = pq.read_table(parts[0])
    assert table.column_names == [*COLUMNS, "fingerprint", "fingerprint_version"]  # the contract's, then ours
    assert set(table["fingerprint_version"].to_pylist()) == {FINGERPRINT_VERSION}
    for image_id, blob in zip(table["image_id"].to_pylist(), table["fingerprint"].to_pylist(), strict=True):
        fp = Fingerprint.from_bytes(blob)
        assert fp.sha256 == hashlib.sha256(base.files[image_id].read_bytes()).digest()  # the file's own bytes


def test_version_fingerprints_survive_compaction(scenario, base) -> None:
    from embeddings.dataset import compact, list_parts
    from indexing.relations.fingerprints import VersionFingerprints

    scn = scenario("fp-compact")
    (part,) = list_parts(scn.settings, base.model_version)
    table = pq.read_table(part)  # two parts, as two batches would write: something to compact
    pq.write_table(table.slice(0, 10), part)
    pq.write_table(table.slice(10), part.with_name("part-second-00001.parquet"))
    version = scn.publish()
    fps = VersionFingerprints(scn.settings, base.model_version, version).get(base.ids)
    assert set(fps) == set(base.ids) and all(fp is not None for fp in fps.values())
    before = {i: fp.to_bytes() for i, fp in fps.items()}
    old_parts = list_parts(scn.settings, base.model_version)
    compact(scn.settings, base.model_version, scn.conninfo)  # the part the version names is gone now
    assert not any(p.exists() for p in old_parts)
    fresh = VersionFingerprints(scn.settings, base.model_version, version)
    again = fresh.get(base.ids)
    assert {i: fp.to_bytes() for i, fp in again.items() if fp is not None} == before
    assert fresh.get([999_999]) == {}  # not in this version


def test_images_embedded_before_fingerprints_are_never_copies(scenario, live_server, base) -> None:
    from embeddings.dataset import list_parts

    scn = scenario("fp-none")
    for part in list_parts(scn.settings, base.model_version):  # as a dataset written before this feature
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["fingerprint", "fingerprint_version"]), part)
    scn.publish()
    srv = live_server(scn.settings)
    srv.wait_ready()
    body = srv.client.get(f"/events/{base.event_a}/duplicates").json()
    assert body["groups"] == [] and body["images_unverifiable"] == body["images_checked"] > 0
    assert srv.client.get(f"/events/{base.event_a}/similar-shots").json()["groups"] == []
    original = base.files[base.ids[0]]
    with open(original, "rb") as fh:  # even the very same file: no evidence, so no "copy"
        r = srv.client.post(f"/events/{base.event_a}/duplicates/check", files={"file": fh})
    assert r.status_code == 200
    body = r.json()
    assert body["duplicate"] is False and body["matches"][0]["id"] == base.ids[0]
    assert body["matches"][0]["relation"] == "related" and "fingerprint" in body["matches"][0]["verdict"]["reason"]


def test_version_fingerprints_of_a_merge_include_its_new_rows(scenario, base) -> None:
    """A merged version keeps new rows in meta-delta.parquet: their fingerprints are found too."""
    from embeddings.runner import embed_batch
    from indexing.relations.fingerprints import VersionFingerprints
    from indexing.store.layout import META_DELTA_FILE
    from tests.serving.conftest import MODEL

    scn = scenario("fp-merge")
    late = base.ids[-4:]
    scn.execute("DELETE FROM image_embeddings WHERE image_id = ANY(%s)", (late,))
    first = scn.publish()  # without the late images
    assert not set(late) & set(VersionFingerprints(scn.settings, base.model_version, first).get(late))
    result = embed_batch(scn.conninfo, late, model_name=MODEL, run_id="late",
                         settings=scn.settings)
    assert result["embedded"] == len(late), result
    merged = scn.publish(mode="merge")
    assert (scn.store().version_dir(merged) / META_DELTA_FILE).exists()  # the merge path, not a rebuild
    fps = VersionFingerprints(scn.settings, base.model_version, merged).get(base.ids)
    assert set(fps) == set(base.ids) and all(fp is not None for fp in fps.values())


def test_relations_computed_on_request_are_bounded(scenario, live_server, base, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A version holding no relations of the current rules: each event is computed once, in the background, one
    event at a time (RELATIONS_CONCURRENCY 1); a request waits RELATIONS_WAIT_SECONDS, then gets 503 with
    Retry-After (it used to wait the whole computation, each request for another event adding one more)."""
    import threading
    import time

    from serving import relations

    scn = scenario("busy", relations_concurrency=1, relations_wait_seconds=0.5)
    scn.publish()
    monkeypatch.setattr("duplicates.verify.RULES_VERSION", "server-side-busy")  # the version's: other rules
    gate, calls = threading.Event(), []
    real = relations.event_verdicts

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(relations, "event_verdicts", slow)
    srv = live_server(scn.settings)
    srv.wait_ready()
    event_a, event_b = (f"/events/{e}" for e in (base.event_a, base.event_b))
    for path in ("/duplicates", "/similar-shots"):  # the same event: one computation, both wait on it
        r = srv.client.get(event_a + path)
        assert r.status_code == 503 and "being computed" in r.json()["detail"], r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    r = srv.client.get(event_b + "/duplicates")  # another event while the only slot computes
    assert r.status_code == 503 and "RELATIONS_CONCURRENCY" in r.json()["detail"], r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert srv.client.get("/").status_code == 200  # the server answers everything else meanwhile
    gate.set()
    deadline = time.monotonic() + 30
    while (r := srv.client.get(event_a + "/duplicates")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.status_code == 200 and r.json()["groups"], r.text
    assert srv.client.get(event_b + "/duplicates").status_code == 200  # computed within the wait
    assert srv.client.get(event_a + "/similar-shots").status_code == 200
    assert len(calls) == 2  # once per event


def test_a_part_read_for_one_fingerprint_caches_the_versions_other_images_from_it(scenario, base) -> None:
    """An upload check asks for 200 candidates spread over every part of an event: a part read once serves the
    next checks too, as long as the cache can hold what it widens to."""
    from embeddings.dataset import list_parts
    from indexing.relations.fingerprints import VersionFingerprints

    scn = scenario("fp-widen")
    assert len(list_parts(scn.settings, base.model_version)) == 1
    version = scn.publish()
    fps = VersionFingerprints(scn.settings, base.model_version, version)
    first = fps.get(base.ids[:2])
    assert set(first) == set(base.ids[:2]) and fps.reads == 1
    rest = fps.get(base.ids)
    assert fps.reads == 1 and set(rest) == set(base.ids) and all(fp is not None for fp in rest.values())
    alone = VersionFingerprints(scn.settings, base.model_version, version).get(base.ids)  # read all at once
    assert {i: fp.to_bytes() for i, fp in rest.items()} == {i: fp.to_bytes() for i, fp in alone.items()}

    small = VersionFingerprints(scn.settings, base.model_version, version, cache_entries=3)
    small.get(base.ids[:2])
    small.get(base.ids[2:4])  # not widened past what the cache holds: read again
    assert small.reads == 2 and set(small.get(base.ids[2:4])) == set(base.ids[2:4])
