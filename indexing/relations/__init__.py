"""Duplicate relations precomputed by the pipeline: each event's verified candidate pairs, stored in the version.

`GET /events/{code}/duplicates` and `/similar-shots` need every candidate pair of the event
verified: each image's `NEIGHBOURS` nearest neighbours (`duplicates.groups.verified_pairs`),
each pair decided by `duplicates.verify.relate`. That is ~25 ms of CPU per image, a minute for
a 2,000-photo event. The build pays it for the events that changed and stores the verdicts as
files of the version, listed in the manifest with their sha256 like every other file: verified
at load, re-hashed by re-checks, backed up and restored with the rest (docs/indexing.md).

- fingerprints.py: the fingerprints verdicts are computed from, read from the embeddings dataset
  (the build and the server read the very same ones);
- format.py: the relations file (rows, footer, the rules it was computed under): writing and reading it;
- reuse.py: what a new version takes from its parent's relations (unchanged events, verdicts of
  unchanged pairs), read O(change);
- compute.py: `event_verdicts` (the one rule, also the server's) and the build's step, `for_rebuild`
  and `for_merge`.

It stands on indexing/store/ (and indexing/parts.py, where the Parquet parts are); the build calls it.
"""
