"""A version opened for use, and searched: what the search server and `verify` hold.

- loaded.py: `open_version` / `load_version` -> `LoadedIndex`: every file verified as it is read into a private
  copy, the metadata and per-event lookups, the search kernels;
- halfscan.py: exact scans of a float16 copy, re-scored from the float32 rows;
- ann.py: exact re-ranking of ANN (IVF-PQ) candidates, one FAISS thread per query.

It stands on indexing/store/ and on nothing else of indexing/.
"""
