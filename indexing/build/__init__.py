"""The build: from the ledger and the embeddings' Parquet parts to a new version folder in the store.

- sources.py: what a build reads: the ledger of live embedded images (PostgreSQL), the vectors of the parts;
- choice.py: which FAISS index for a size and a memory budget;
- plan.py: whether a merge can be made, and what it changes (or why it must be a rebuild);
- builder.py: `build_version` (rebuild or merge, the relations step, the manifest, the rename into place),
  `next_version`.

It goes down into indexing/relations/ (the version's duplicate relations) and indexing/store/; the
pipeline (indexing/pipeline.py) calls it under the store's writers' lock.
"""
