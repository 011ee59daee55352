"""Event relations precomputed by the pipeline (indexing/relations/) against a real server: groups are read
from the version, never computed on the request; a merge verifies only the events that changed; a damaged
relations file is refused like any version file, one that verifies but cannot be used is computed instead;
relations of other verification rules are ignored. Answers are the same as the server's own computation."""

from __future__ import annotations

import re

import pytest

from indexing.store.layout import MANIFEST_FILE, RELATIONS_DELTA_FILE, RELATIONS_FILE
from tests.helpers import flip_byte, overwrite

ROUTES = ("duplicates", "similar-shots")


def _answers(srv, base) -> dict:  # type: ignore[no-untyped-def]
    out = {}
    for route in ROUTES:
        for event in (base.event_a, base.event_b):
            r = srv.client.get(f"/events/{event}/{route}")
            assert r.status_code == 200, r.text
            out[(route, event)] = r.json()
    return out


def _sources(srv) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """imgsim_event_relations_total by source: where each event's verified pairs came from."""
    text = srv.client.get("/metrics").text
    return {m[1]: float(m[2]) for m in re.finditer(r'^imgsim_event_relations_total\{source="(\w+)"\} (\S+)$', text,
                                                    re.M) if float(m[2])}


def _planted(answers, base) -> None:  # type: ignore[no-untyped-def]
    dup = answers[("duplicates", base.event_a)]
    assert sorted([i["id"] for i in g["images"]] for g in dup["groups"]) == sorted(map(list, base.dup_pairs))
    assert answers[("duplicates", base.event_b)]["groups"] == []
    shots = answers[("similar-shots", base.event_a)]["groups"]
    assert [sorted(i["id"] for i in g["images"]) for g in shots] == [sorted(base.scene_pair)]


def _computed_by_the_server(scn, live_server, base, monkeypatch, version):  # type: ignore[no-untyped-def]
    """The same version answered by a server that computes every event itself (its rules differ from the file's)."""
    monkeypatch.setattr("duplicates.verify.RULES_VERSION", "server-side-test")
    srv = live_server(scn.settings)
    srv.wait_ready(version=version)
    answers = _answers(srv, base)
    assert _sources(srv) == {"computed": 2.0}
    monkeypatch.undo()
    return answers


def _relations_file(path):  # type: ignore[no-untyped-def]
    from indexing.relations.format import RelationsFile

    return RelationsFile(path, path.name)


def test_groups_are_read_from_the_version_not_computed(scenario, live_server, base, monkeypatch) -> None:
    from duplicates.verify import RULES_VERSION

    scn = scenario("rel-read")
    v1 = scn.publish()
    manifest = scn.store().read_manifest(v1)
    assert manifest.has(RELATIONS_FILE) and not manifest.has(RELATIONS_DELTA_FILE)
    assert (manifest.relations["computed"], manifest.relations["kept"], manifest.relations["skipped"]) == (2, 0, 0)
    assert manifest.relations["rules_version"] == RULES_VERSION and manifest.relations["pairs"] > 0

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the server verified an event itself")

    monkeypatch.setattr("serving.relations.event_verdicts", refuse)
    srv = live_server(scn.settings)
    srv.wait_ready(version=v1)
    answers = _answers(srv, base)
    _planted(answers, base)
    assert _sources(srv) == {"precomputed": 2.0}  # one load per event, then the per-version cache
    monkeypatch.undo()
    assert _computed_by_the_server(scn, live_server, base, monkeypatch, v1) == answers


def test_a_merge_verifies_only_the_changed_events(scenario, live_server, base, monkeypatch) -> None:
    from embeddings.runner import embed_batch
    from indexing.relations import compute as relations
    from tests.serving.conftest import MODEL

    scn = scenario("rel-merge")
    store = scn.store()
    v1 = scn.publish()
    m1 = store.read_manifest(v1)
    verified: list[list[int]] = []
    real = relations.event_verdicts

    def counting(ids, vectors, fingerprints, known=None):  # type: ignore[no-untyped-def]
        verified.append(sorted(int(i) for i in ids))
        return real(ids, vectors, fingerprints, known)

    monkeypatch.setattr(relations, "event_verdicts", counting)
    event_b = [i for n, i in enumerate(base.ids) if 14 <= n < 24]

    # Event B loses an image: only B is verified again; A's relations stay the parent's file, shared.
    scn.execute("DELETE FROM images WHERE id = %s", (event_b[3],))
    v2 = scn.publish(mode="merge")
    m2 = store.read_manifest(v2)
    assert m2.mode == "merge" and verified == [sorted(set(event_b) - {event_b[3]})]
    assert (m2.relations["computed"], m2.relations["kept"], m2.relations["base"]) == (1, 1, "linked")
    assert m2.sha256[RELATIONS_FILE] == m1.sha256[RELATIONS_FILE]
    shared = {(store.version_dir(v) / RELATIONS_FILE).stat().st_ino for v in (v1, v2)}
    assert len(shared) == 1  # one file, hard-linked
    delta2 = _relations_file(store.version_dir(v2) / RELATIONS_DELTA_FILE)
    assert set(delta2.events) == {base.event_b}

    # An image of event A re-embedded: A is verified again, B's entry is copied from v2's delta as it was.
    verified.clear()
    assert embed_batch(scn.conninfo, [base.ids[0]], model_name=MODEL, run_id="again",
                       settings=scn.settings)["embedded"] == 1
    v3 = scn.publish(mode="merge")
    m3 = store.read_manifest(v3)
    event_a = [i for n, i in enumerate(base.ids) if not 14 <= n < 24]
    assert m3.mode == "merge" and verified == [sorted(event_a)]
    assert (m3.relations["computed"], m3.relations["kept"], m3.relations["base"]) == (1, 1, "linked")
    delta3 = _relations_file(store.version_dir(v3) / RELATIONS_DELTA_FILE)
    assert set(delta3.events) == {base.event_a, base.event_b}
    old, new = delta2.events[base.event_b], delta3.events[base.event_b]
    assert (new.ids_hash, new.content_hash, new.seconds) == (old.ids_hash, old.content_hash, old.seconds)
    assert delta3.verdicts(base.event_b, new) == delta2.verdicts(base.event_b, old)
    monkeypatch.undo()

    # Served: both events read from v3's files, the planted groups, the server's own computation alike.
    srv = live_server(scn.settings)
    srv.wait_ready(version=v3)
    answers = _answers(srv, base)
    _planted(answers, base)
    assert _sources(srv) == {"precomputed": 2.0}
    assert _computed_by_the_server(scn, live_server, base, monkeypatch, v3) == answers


def test_damaged_relations_files_are_refused_like_any_version_file(scenario, live_server, base) -> None:
    from indexing import pipeline
    from indexing.verify import VerificationFailed

    scn = scenario("rel-damage")
    store = scn.store()
    v1 = scn.publish()
    report = pipeline.backup(scn.conninfo, scn.settings, base.model_version)
    assert report.verified == [v1] and report.copied == [], report  # publish made the copy
    scn.execute("DELETE FROM images WHERE id = %s", (base.ids[20],))
    v2 = scn.publish(mode="merge")
    flip_byte(store.version_dir(v1) / RELATIONS_FILE)  # same size: only the checksum can tell
    (store.version_dir(v2) / RELATIONS_DELTA_FILE).unlink()
    srv = live_server(scn.settings)
    # v2's store copy refused (a file missing; its base, v1's relations, fails its checksum): v2's backup copy,
    # made when v2 was published, serves (before that copy existed at publish, v1's backup did).
    srv.wait_ready(version=v2)
    stats = srv.client.get("/stats").json()
    assert stats["served_from"] == "backup"
    refused = stats["swap"]["failed_versions"]
    assert "relations-delta.parquet: missing" in refused[str(v2)] or "relations.parquet: checksum mismatch" in \
        refused[str(v2)], refused
    answers = _answers(srv, base)
    _planted(answers, base)
    assert _sources(srv) == {"precomputed": 2.0}  # from the backup copy's relations, which verify
    with pytest.raises(VerificationFailed, match=r"relations\.parquet: checksum mismatch"):
        pipeline.verify(scn.conninfo, scn.settings, base.model_version, v1)


def test_relations_that_verify_but_cannot_be_used_are_computed(scenario, live_server, base) -> None:
    """A relations file whose checksums were fixed up (a bug, a hand): an event over other images, then a
    file that is not Parquet at all. Never served wrong: those events are computed by the server."""
    from dataclasses import replace

    from indexing.relations.format import RelationsWriter, Rules, ids_hash
    from indexing.store.integrity import sha256_file
    from indexing.store.layout import Manifest

    scn = scenario("rel-unusable")
    store = scn.store()
    v1 = scn.publish()
    folder = store.version_dir(v1)
    good = _relations_file(folder / RELATIONS_FILE)
    crafted = folder / "crafted.parquet"
    writer = RelationsWriter(crafted, Rules.current())
    for code, entry in good.events.items():
        if code == base.event_a:  # computed over other ids (another order): must not be used for this version
            entry = replace(entry, ids_hash=ids_hash(list(reversed(base.ids))))
        writer.keep(code, entry, good.rows(code, entry))
    writer.close()

    def install(data: bytes) -> None:
        overwrite(folder / RELATIONS_FILE, data)
        old = store.read_manifest(v1)
        digest = sha256_file(folder / RELATIONS_FILE)
        fixed = Manifest(**{**old.__dict__, "sha256": {**old.sha256, RELATIONS_FILE: digest},
                            "sizes": {**old.sizes, RELATIONS_FILE: len(data)}})
        overwrite(folder / MANIFEST_FILE, fixed.to_json())

    install(crafted.read_bytes())
    crafted.unlink()
    srv = live_server(scn.settings)
    srv.wait_ready(version=v1)
    _planted(_answers(srv, base), base)
    assert _sources(srv) == {"precomputed": 1.0, "computed": 1.0}
    srv.stop()

    install(b"not a parquet file at all")
    srv = live_server(scn.settings)
    srv.wait_ready(version=v1)
    _planted(_answers(srv, base), base)
    assert _sources(srv) == {"computed": 2.0}


def test_relations_of_other_rules_are_ignored(scenario, live_server, base, monkeypatch) -> None:
    scn = scenario("rel-rules")
    store = scn.store()
    monkeypatch.setattr("duplicates.verify.RULES_VERSION", "v0-test")  # as built before a threshold change
    v1 = scn.publish()
    monkeypatch.undo()
    assert store.read_manifest(v1).relations["rules_version"] == "v0-test"
    srv = live_server(scn.settings)
    srv.wait_ready(version=v1)
    _planted(_answers(srv, base), base)
    assert _sources(srv) == {"computed": 2.0}

    # A merge under the current rules shares nothing of the stale file: it verifies the changed event (B) and
    # leaves A, unchanged, to the server.
    scn.execute("DELETE FROM images WHERE id = %s", (base.ids[20],))
    v2 = scn.publish(mode="merge")
    m2 = store.read_manifest(v2)
    assert not m2.has(RELATIONS_FILE) and m2.has(RELATIONS_DELTA_FILE)
    assert (m2.relations["computed"], m2.relations["kept"], m2.relations["base"]) == (1, 0, "none")
    srv.wait_ready(version=v2)
    _planted(_answers(srv, base), base)
    assert _sources(srv) == {"computed": 3.0, "precomputed": 1.0}


def test_a_rebuild_in_place_of_a_merge_reuses_unchanged_events(scenario, base, monkeypatch) -> None:
    """A merge that must rebuild (compaction, another index type) copies the events whose ids, order and
    embedded_at are those they were verified over, verifies only the new pairs of the others; an explicit
    rebuild verifies every event again."""
    from indexing import pipeline
    from indexing.relations import compute as relations

    scn = scenario("rel-reuse")
    store = scn.store()
    v1 = scn.publish()
    verified: list[int] = []
    found: list[tuple] = []  # type: ignore[type-arg]
    real = relations.event_verdicts

    def counting(ids, vecs, fps, known=None):  # type: ignore[no-untyped-def]
        verified.append(len(ids))
        found.append((real(ids, vecs, fps, known), real(ids, vecs, fps)))  # lent to, and from scratch
        return found[-1][0]

    monkeypatch.setattr(relations, "event_verdicts", counting)
    scn.execute("DELETE FROM images WHERE id = %s", (base.ids[20],))  # event B changes, A does not
    built = pipeline.build(scn.conninfo, scn.settings, base.model_version, mode="merge", index_type="hnsw")
    m2 = store.read_manifest(built["version"])
    assert m2.mode == "rebuild" and "hnsw" in m2.rebuild_reason
    assert (m2.relations["computed"], m2.relations["kept"], m2.relations["base"]) == (1, 1, "written")
    assert verified == [9]  # event B's nine images, their pairs the parent holds not verified again
    (lent, scratch), = found
    before = _relations_file(store.version_dir(v1) / RELATIONS_FILE)
    # Every pair the parent verified is lent, the rest verified (keypoint votes may pick a new candidate pair
    # once the event lost an image): the answer is the one from scratch.
    held = before.verdicts(base.event_b, before.events[base.event_b])
    lendable = sum(pair in held for pair in scratch.verdicts)
    assert lent.verdicts == scratch.verdicts and lent.reused == m2.relations["reused"] == lendable > 0
    assert lendable >= len(scratch.verdicts) - 5
    after = _relations_file(store.version_dir(built["version"]) / RELATIONS_FILE)
    a1, a2 = before.events[base.event_a], after.events[base.event_a]
    assert (a2.ids_hash, a2.content_hash, a2.seconds) == (a1.ids_hash, a1.content_hash, a1.seconds)
    assert after.verdicts(base.event_a, a2) == before.verdicts(base.event_a, a1)

    verified.clear()
    again = pipeline.build(scn.conninfo, scn.settings, base.model_version, mode="rebuild")
    rebuilt = store.read_manifest(again["version"]).relations
    assert (rebuilt["computed"], rebuilt["reused"]) == (2, 0) and sorted(verified) == [9, 20]


def test_a_merge_verifies_only_the_pairs_it_has_no_verdict_for(scenario, base, monkeypatch) -> None:
    """Photos merged into an event: only the candidate pairs the parent holds no verdict for are verified
    (relate() counted), the others are the parent's verdicts; the event's relations are exactly what a
    rebuild computes, pair for pair (relation, score, reason). A re-embedded image's pairs are all verified."""
    import shutil
    import uuid

    import numpy as np

    from duplicates import groups
    from embeddings.runner import embed_batch
    from indexing import pipeline
    from indexing.relations import compute as relations
    from tests.serving.conftest import MODEL

    scn = scenario("rel-pairs")
    store = scn.store()
    scn.publish()
    calls: list[tuple[int, int]] = []  # (query id, candidate id) of every relate() the build made
    seen: list[tuple] = []  # (ids, vectors, fingerprints, known, found) of every event the build verified
    id_of: dict[int, int] = {}
    real_verdicts, real_relate = relations.event_verdicts, groups.relate

    def capturing(ids, vectors, fps, known=None):  # type: ignore[no-untyped-def]
        id_of.update({id(fp): i for i, fp in fps.items() if fp is not None})
        found = real_verdicts(ids, vectors, fps, known)
        seen.append((np.array(ids), np.array(vectors), dict(fps), known, found))
        return found

    def counting(query, candidate, cosine):  # type: ignore[no-untyped-def]
        calls.append((id_of[id(query)], id_of[id(candidate)]))
        return real_relate(query, candidate, cosine)

    def merged(mode: str = "merge", **how: str) -> tuple[int, tuple]:  # type: ignore[type-arg]
        """Build (a plain merge: and publish) with relate() counted; the one event verified, if one was."""
        calls.clear()
        seen.clear()
        with monkeypatch.context() as patch:
            patch.setattr(relations, "event_verdicts", capturing)
            patch.setattr(groups, "relate", counting)
            if mode == "merge" and not how:
                version = scn.publish(mode="merge")
            else:
                version = int(pipeline.build(scn.conninfo, scn.settings, base.model_version, mode=mode,
                                             **how)["version"])
        return version, seen[0] if len(seen) == 1 else ()

    def oriented(ids, verdicts) -> set[tuple[int, int]]:  # type: ignore[no-untyped-def]
        row = {int(i): r for r, i in enumerate(ids)}
        return {(a, b) if row[a] < row[b] else (b, a) for a, b in verdicts}

    # Three photos added to event A: a turned copy of one of its photos, another shot of a scene, an unrelated one.
    added = []
    for src in (base.rotated_upload, base.scene_upload, base.unrelated_upload):
        name = f"added_{uuid.uuid4().hex[:8]}{src.suffix}"
        shutil.copyfile(src, base.image_root / "uploads" / name)
        added += [int(r[0]) for r in scn.execute(
            "INSERT INTO images (event_code, filename, file_path) VALUES (%s, %s, %s) RETURNING id",
            (base.event_a, name, f"/uploads/{name}"))]
    assert embed_batch(scn.conninfo, added, model_name=MODEL, run_id="added", settings=scn.settings)["embedded"] == 3
    v2, (ids, vectors, fps, known, found) = merged()
    m2 = store.read_manifest(v2)
    assert m2.mode == "merge" and m2.relations["computed"] == 1 and set(added) <= set(ids.tolist())
    scratch = real_verdicts(ids, vectors, fps)  # the same event verified from scratch
    assert found.verdicts == scratch.verdicts  # pair for pair: relation, score, reason
    new_pairs = oriented(ids, scratch.verdicts) - set(known)
    assert sorted(calls) == sorted(new_pairs) and len(calls) == len(scratch.verdicts) - found.reused
    assert {p for p in oriented(ids, scratch.verdicts) if set(p) & set(added)} <= set(calls)
    assert 0 < len(calls) < found.reused and m2.relations["reused"] == found.reused
    # ... and what a rebuild computes for the event (it holds the same ids in the same order).
    v3, _ = merged("rebuild")
    rebuilt = _relations_file(store.version_dir(v3) / RELATIONS_FILE)
    delta = _relations_file(store.version_dir(v2) / RELATIONS_DELTA_FILE)
    a_rebuilt, a_merged = rebuilt.events[base.event_a], delta.events[base.event_a]
    assert a_rebuilt.ids_hash == a_merged.ids_hash
    assert delta.verdicts(base.event_a, a_merged) == rebuilt.verdicts(base.event_a, a_rebuilt) == scratch.verdicts

    # One photo of the event re-embedded (a new embedded_at): every pair of it is verified again.
    again = base.dup_pairs[0][0]
    assert embed_batch(scn.conninfo, [again], model_name=MODEL, run_id="again", settings=scn.settings)["embedded"] == 1
    v4, (ids, vectors, fps, known, found) = merged()
    assert store.read_manifest(v4).parent_version == v2
    scratch = real_verdicts(ids, vectors, fps)
    assert found.verdicts == scratch.verdicts and not any(again in p for p in known)
    mine = {p for p in oriented(ids, scratch.verdicts) if again in p}
    assert mine and mine <= set(calls)
    assert sorted(calls) == sorted(oriented(ids, scratch.verdicts) - set(known)) and found.reused > len(calls)

    # A merge that must rebuild (HNSW asked for) after one added photo went: the event's rows are in id order
    # again, so the re-embedded photo (the delta's first row, now the event's first) meets the others in the
    # other order: relate() is not symmetric, so those pairs are verified again; the rest are lent.
    scn.execute("DELETE FROM images WHERE id = %s", (added[2],))
    v5, (ids, vectors, fps, known, found) = merged("merge", index_type="hnsw")
    m5 = store.read_manifest(v5)
    assert m5.mode == "rebuild" and m5.parent_version == v4 and int(ids[0]) == again
    scratch = real_verdicts(ids, vectors, fps)
    assert found.verdicts == scratch.verdicts and found.reused == m5.relations["reused"] > len(calls)
    assert sorted(calls) == sorted(oriented(ids, scratch.verdicts) - set(known))
    flipped = {(again, b) for a, b in oriented(ids, scratch.verdicts) if a == again and b not in added}
    assert flipped and flipped <= set(calls)


def test_events_verified_on_a_pool_write_the_file_one_process_writes(scenario, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """RELATIONS_PROCESSES: events verified on spawned processes give the relations file of the build's own
    process (the same events in the same order, the same rows; only the seconds each took differ); also when the
    build runs in a daemonic process (a task in a Celery prefork worker, where the standard library's pool refuses
    to start); a pool that cannot start leaves the work to the build's process."""
    import logging
    import multiprocessing

    from indexing.relations import compute

    def relations_of(name: str, processes: int) -> list[tuple]:  # type: ignore[type-arg]
        """The file's events in file order, each with its entry (but the seconds it took) and its rows."""
        from dataclasses import replace

        scn = scenario(name, relations_processes=processes)
        v = scn.publish()
        manifest = scn.store().read_manifest(v)
        assert manifest.relations["computed"] == 2 and manifest.relations["pairs"] > 0
        f = _relations_file(scn.store().version_dir(v) / RELATIONS_FILE)
        return [(code, replace(e, seconds=0.0), f.rows(code, e).to_pylist()) for code, e in f.events.items()]

    one = relations_of("pool-one", 1)
    monkeypatch.setitem(multiprocessing.current_process()._config, "daemon", True)  # as in a Celery worker
    # The session's events (10 and 14 images) as two small events verified whole, one per process, and as two
    # large ones, each verified alone with its pairs shared among the processes.
    for name, least in (("pool-events", 15), ("pool-pairs", 0)):
        monkeypatch.setattr(compute, "POOL_MIN_IMAGES", least)
        with caplog.at_level(logging.INFO, logger="indexing.relations.compute"):
            assert relations_of(name, 2) == one, name
        assert "verifying events on 2 processes" in caplog.text and "failed" not in caplog.text
        caplog.clear()

    def no_pool(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("no processes left")

    monkeypatch.setattr("billiard.get_context", no_pool)
    with caplog.at_level(logging.INFO, logger="indexing.relations.compute"):
        assert relations_of("pool-broken", 2) == one
    assert "pool of 2 processes failed (OSError: no processes left); verifying in this process" in caplog.text
