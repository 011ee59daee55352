"""Opening a version over the one served: its unchanged base file is shared, never copied or hashed again."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from indexing import pipeline
from indexing.search import loaded as loaded_module
from indexing.search.loaded import open_version
from indexing.store.integrity import IndexCorrupt
from indexing.store.layout import DELTA_FILE, INDEX_FILE, SIDECAR_FILES, VECTORS_FILE, IndexStore
from tests.helpers import flip_byte
from tests.indexing.build.test_build import assert_matches_corpus
from tests.indexing.conftest import MODEL, Corpus, unit_vectors


def _copies_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files a private copy is made of (copied and hashed) from now on."""
    made: list[str] = []
    real = loaded_module.PrivateCopy

    def spy(source: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(source.name)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(loaded_module, "PrivateCopy", spy)
    return made


def test_a_merge_opened_over_the_served_version_shares_its_base(small_corpus: Corpus, conninfo: str, settings: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = small_corpus
    pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    pipeline.publish(conninfo, settings, MODEL, 1)  # a merge's parent
    store = IndexStore(settings, MODEL)
    served = open_version(store, 1)
    query = unit_vectors(11, 3)
    before = served.search(query, 10)

    corpus.embed(corpus.images(corpus.event(), 5))
    ids = sorted(corpus.vectors)
    corpus.delete(ids[3:5])
    assert pipeline.build(conninfo, settings, MODEL, mode="merge")["mode"] == "merge"
    made = _copies_made(monkeypatch)
    merged = open_version(store, 2, reuse=served)
    assert INDEX_FILE not in made, made  # the base: the served version's verified copy, as it is
    m1, m2 = store.read_manifest(1), store.read_manifest(2)
    copied = {INDEX_FILE, VECTORS_FILE, DELTA_FILE, *SIDECAR_FILES}  # read from private copies (meta: parsed)
    unchanged = [f for f in m2.files if f in copied and m2.sha256[f] in set(m1.sha256.values())]
    assert INDEX_FILE in unchanged and not set(unchanged) & set(made), (unchanged, made)
    assert merged.reused_bytes == sum(m2.sizes[f] for f in unchanged)
    assert_matches_corpus(merged, corpus)  # new rows found, removed ones never, through the shared base
    alone = open_version(store, 2)  # the same version opened from scratch answers the same
    for got, want in zip(merged.search(query, 10), alone.search(query, 10), strict=True):
        np.testing.assert_array_equal(got, want)

    # A version refused after opening is closed: what it shares stays open for the version served.
    merged.close()
    for got, want in zip(served.search(query, 10), before, strict=True):
        np.testing.assert_array_equal(got, want)
    assert served.recheck() == (None, None)

    # A rebuild writes a new base: nothing to share, every file copied and hashed.
    rebuilt = pipeline.build(conninfo, settings, MODEL, mode="rebuild")["version"]
    made.clear()
    fresh = open_version(store, rebuilt, reuse=served)
    assert fresh.reused_bytes == 0 and INDEX_FILE in made
    assert_matches_corpus(fresh, corpus)

    # The base written to in place (one inode, both versions' file): not taken on trust, hashed and refused.
    flip_byte(store.version_dir(2) / INDEX_FILE)
    with pytest.raises(IndexCorrupt, match="checksum"):
        open_version(store, 2, reuse=served)
    assert served.recheck()[1] is not None  # and the version served reports its file damaged
