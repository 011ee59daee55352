"""The index store: versions of one model's index on disk and, with an object-store DATA_DIR, in object storage.

- layout.py: where everything is (`IndexStore`, version folders, CURRENT), the typed `Manifest`, the writers' lock;
- files.py: writing files durably, making them read-only, sharing them by hard links;
- integrity.py: checksums, `IndexCorrupt`, verified reads and private copies of segments;
- segments.py: the raw vectors inside a flat FAISS segment;
- remote.py: the local store as a verified mirror of the object store (push, pull, CURRENT);
- backup.py: full, verified copies in BACKUP_DIR that share no file with the store.

Nothing here imports the build, the relations, the search side or the pipeline: they stand on it.
"""
