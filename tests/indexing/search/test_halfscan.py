"""Exact search from float16 copies: same answers as a float32 scan, float32 pages never resident."""

from __future__ import annotations

import mmap
import tempfile

import numpy as np
import pytest

from indexing import pipeline
from indexing.search.halfscan import Block, ExactRows, HalfVectors, batch_top_k, dot_rows, exact_top_k, top_k
from indexing.search.loaded import load_version
from tests.indexing.conftest import MODEL, Corpus, unit_vectors


def hard_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit rows with traps for a float16 scan: near-copies closer than float16 can tell, exact repeats."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[n // 10: n // 5] = x[n // 10] + 1e-5 * rng.normal(size=(n // 5 - n // 10, d)).astype(np.float32)
    x[n // 5: n // 5 + 10] = x[n // 5]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mapped(x: np.ndarray, lead: int = 100):  # type: ignore[no-untyped-def]
    """x written after `lead` bytes to a temp file, and a read-only mapping of it (as FAISS maps a segment)."""
    fh = tempfile.TemporaryFile()  # noqa: SIM115 (stays open: the mapping's file, as a private copy's)
    fh.write(b"\0" * lead + x.tobytes())
    fh.flush()
    view = np.frombuffer(mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ), dtype=np.float32, offset=lead)
    return fh, view.reshape(x.shape)


def population(x: np.ndarray, ids: np.ndarray, q: np.ndarray, lo: int, hi: int, keep):  # type: ignore[no-untyped-def]
    """Every candidate's float32 score (the kernel the old scan used) and id."""
    scores, pool = dot_rows(x, lo, hi, q), ids[lo:hi]
    if keep is not None:
        scores, pool = scores[keep], pool[keep]
    return scores, pool


def assert_exact(got: tuple[np.ndarray, np.ndarray], scores: np.ndarray, ids: np.ndarray, k: int) -> None:
    """`got` is the float32 top-k of (scores, ids): identical scores, best first; any of exactly tied ids."""
    want_s, _ = top_k(scores, ids, k)
    np.testing.assert_array_equal(got[0], want_s)
    for s, i in zip(got[0].tolist(), got[1].tolist(), strict=True):
        assert i in set(ids[scores == s].tolist())
    assert len(set(got[1].tolist())) == len(got[1])


def test_float16_scan_gives_the_float32_answer_exactly() -> None:
    n, d = 4000, 384
    x = hard_vectors(n, d)
    fh, view = mapped(x)
    exact = ExactRows.of(view, fh)
    assert exact.reads_file
    half = HalfVectors(exact)
    ids = np.arange(n, dtype=np.int64) * 3 + 11
    rng = np.random.default_rng(1)
    for t in range(240):
        kind = t % 4
        if kind == 0:  # a new photo of a stored one
            q = x[rng.integers(0, n)] + 0.05 * rng.normal(size=d)
        elif kind == 1:  # among the near-copies: only float32 can order them
            q = x[n // 10] + 1e-6 * rng.normal(size=d)
        elif kind == 2:  # the exact repeats tie
            q = x[n // 5].astype(np.float64)
        else:
            q = rng.normal(size=d) * rng.uniform(0.1, 10)  # any length: the bound scales with |q|
        q = q.astype(np.float32)
        lo = int(rng.integers(0, n - 1))
        hi = int(rng.integers(lo + 1, n + 1))
        keep = (rng.random(hi - lo) < 0.7) if t % 3 == 0 else None
        k = int(rng.integers(1, 50))
        got = exact_top_k(q, [Block(half, exact, ids, lo, hi, keep)], k)
        assert_exact(got, *population(x, ids, q, lo, hi, keep), k)
    # two blocks (base slice + delta rows) merge into one exact answer
    q = x[5]
    got = exact_top_k(q, [Block(half, exact, ids, 0, 100), Block(half, exact, ids, 3000, 3100)], 30)
    both = np.r_[0:100, 3000:3100]
    assert_exact(got, dot_rows(x, 0, n, q)[both], ids[both], 30)


def test_the_error_bound_covers_every_row() -> None:
    x = hard_vectors(3000, 512, seed=3)
    fh, view = mapped(x)
    exact = ExactRows.of(view, fh)
    half = HalfVectors(exact)
    rng = np.random.default_rng(4)
    for _ in range(20):
        q = rng.normal(size=512).astype(np.float32)
        approx, rows = half.scan(q, 0, len(x), len(x))
        assert len(rows) == len(x)
        err = np.abs(approx - dot_rows(x, 0, len(x), q)[rows])
        assert err.max() <= half.bound * np.linalg.norm(q)
        assert half.bound < 1e-3  # tight enough to keep the candidate lists short


def test_rows_are_read_from_the_file_with_the_mappings_offset() -> None:
    x = hard_vectors(500, 64)
    fh, view = mapped(x, lead=4096 + 36)  # not page-aligned, as inside a FAISS file
    exact = ExactRows.of(view, fh)
    assert exact.reads_file
    rows = np.array([499, 3, 3, 4, 5, 0])
    np.testing.assert_array_equal(exact.take(rows), x[rows])
    np.testing.assert_array_equal(exact.span(10, 20), x[10:20])
    np.testing.assert_array_equal(exact[7], x[7])
    in_memory = ExactRows.of(x, None)  # no private copy to read (no /proc): the array itself
    assert not in_memory.reads_file
    np.testing.assert_array_equal(in_memory.take(rows), x[rows])
    with tempfile.TemporaryFile() as other:
        other.write(x.tobytes())
        assert not ExactRows.of(view, other).reads_file  # a file the view does not map is never trusted


def test_batches_are_exact_and_skip_dead_rows() -> None:
    x = hard_vectors(9000, 128, seed=5)
    fh, view = mapped(x)
    exact = ExactRows.of(view, fh)
    ids = np.arange(len(x), dtype=np.int64) + 1
    dead = np.zeros(len(x), dtype=bool)
    dead[::3] = True
    s, i = batch_top_k(x[:12], exact, ids, 10, dead)
    for r in range(12):
        want_s, _ = top_k(np.where(dead, -np.inf, x @ x[r]).astype(np.float32), ids, 10)
        np.testing.assert_allclose(s[r], want_s, atol=1e-6)
        assert not set(i[r].tolist()) & set(ids[dead].tolist())


def test_float16_copy_is_rounded_to_nearest_like_numpy() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3000, 256)).astype(np.float32)
    x[0, :8] = [0.0, -0.0, 65504.0, -65504.0, 6e-8, 3e-5, 1 / 3, 2049.0]  # zeros, limits, subnormals, a tie
    x[1] *= 1e-6  # a row of float16 subnormals
    half = HalfVectors(ExactRows.of(x, None))
    np.testing.assert_array_equal(half.codes.view(np.uint16), x.astype(np.float16).view(np.uint16))


def test_non_float16_values_are_refused() -> None:
    from indexing.search.halfscan import NotHalfable

    x = np.ones((4, 8), dtype=np.float32) * 7e4
    with pytest.raises(NotHalfable):
        HalfVectors(ExactRows.of(x, None))


# -- a served version ---------------------------------------------------------------------------
def resident_bytes(a: np.ndarray) -> int:
    """Bytes of `a`'s pages present in this process's page table (/proc/self/pagemap, bit 63).

    Counted over the array's own pages, not the whole mapping that holds it: malloc may place an array
    inside a larger heap mapping, or at the end of one, so a mapping's Rss says nothing about the array."""
    page = mmap.PAGESIZE
    start = int(a.__array_interface__["data"][0])
    first, last = start // page, (start + a.nbytes - 1) // page
    with open("/proc/self/pagemap", "rb") as fh:
        fh.seek(first * 8)
        entries = np.frombuffer(fh.read((last - first + 1) * 8), dtype=np.uint64)
    return int(np.count_nonzero(entries >> np.uint64(63))) * page


@pytest.fixture
def wide_corpus(db, settings, conninfo) -> Corpus:
    """Four events of 600 images, 512-d, with near-copies; rebuilt, published, then merged (delta rows in
    old events, removed rows inside event slices)."""
    corpus = Corpus(db, settings, dim=512)
    ids: list[int] = []
    for _ in range(4):
        ids += corpus.images(corpus.event(), 600)
    vecs = unit_vectors(3, len(ids), 512)
    vecs[100:106] = vecs[100] + 1e-5 * np.random.default_rng(2).normal(size=(6, 512)).astype(np.float32)
    vecs[100:106] /= np.linalg.norm(vecs[100:106], axis=1, keepdims=True)
    corpus.embed(ids, vecs)
    built = pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    pipeline.publish(conninfo, settings, MODEL, built["version"])
    corpus.embed(corpus.images(corpus.event_of[ids[0]], 30) + corpus.images(corpus.event_of[ids[900]], 5))
    corpus.embed(ids[610:615])  # re-embedded: removed from the base, added to the delta
    corpus.delete(ids[1200:1260])
    merged = pipeline.build(conninfo, settings, MODEL)
    assert merged["mode"] == "merge"
    pipeline.publish(conninfo, settings, MODEL, merged["version"])
    return corpus


def test_served_version_answers_exactly_and_keeps_float32_pages_out_of_memory(wide_corpus, settings) -> None:
    corpus = wide_corpus
    loaded = load_version(settings, MODEL)
    assert loaded._delta is not None and loaded._base_dead is not None
    segments = [s for s in (loaded._base, loaded._delta) if s is not None]
    assert all(s.half is not None and s.exact.reads_file for s in segments)
    # Loading maps the private copies and reads their headers and ids (the kernel maps whole page-cache
    # folios, up to 2 MB, around what is read); searching must add nothing to that.
    loaded_resident = [resident_bytes(s.vectors) for s in segments]
    stored = {int(i): loaded.vector(int(i)) for i in loaded.ids}  # what is served, read by pread
    rng = np.random.default_rng(9)
    events = sorted(set(corpus.event_of.values()))
    for event in events:
        members = np.array(sorted(loaded.event_ids(event).tolist()), dtype=np.int64)
        block = np.stack([stored[int(i)] for i in members])
        for t in range(15):
            base = stored[int(members[rng.integers(0, len(members))])]
            q = (base + (0.05 if t % 2 else 1e-6) * rng.normal(size=512)).astype(np.float32)
            q /= np.linalg.norm(q)
            k = int(rng.integers(1, 40))
            assert_exact(loaded.search_event(q, event, k), dot_rows(block, 0, len(block), q), members, k)
        loaded.event_vectors(event)
    everything = np.stack([stored[int(i)] for i in loaded.ids])
    for q in everything[rng.integers(0, len(everything), 4)]:
        s, i = loaded.search(q, 25)
        assert_exact((s[0], i[0]), dot_rows(everything, 0, len(everything), q), loaded.ids, 25)

    # Searched everything (and read every vector): the float16 copy is resident, the float32 pages are not.
    for seg, before in zip(segments, loaded_resident, strict=True):
        assert seg.half is not None
        assert resident_bytes(seg.vectors) <= before + 64 * 1024
        assert resident_bytes(seg.half.codes) >= seg.half.codes.nbytes * 0.9
        assert seg.half.codes.nbytes == seg.vectors.nbytes // 2


def test_a_version_opened_only_to_be_checked_has_no_float16_copy_and_the_same_answers(wide_corpus, settings):
    from indexing.search.loaded import open_version
    from indexing.store.layout import IndexStore

    store = IndexStore(settings, MODEL)
    served, checked = (open_version(store, store.current_version(), float16=f) for f in (True, False))
    assert checked._base.half is None and checked._delta is not None and checked._delta.half is None
    for event in checked.events():
        q = checked.vector(int(checked.event_ids(event)[0]))
        (s1, i1), (s2, i2) = served.search_event(q, event, 12), checked.search_event(q, event, 12)
        np.testing.assert_allclose(s1, s2, atol=1e-6)
        assert set(i1.tolist()) == set(i2.tolist())
    checked.close()
