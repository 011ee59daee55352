"""Where bytes live: a local folder or an object-store prefix (`s3://bucket/prefix`), behind fsspec.

One layer for every package: `location` parses a setting into a typed `Location` (and refuses a
scheme no installed filesystem handles), `filesystems` makes the fsspec filesystem with the
settings' endpoint and credentials, `objects` does the few operations the pipeline needs (an
atomic put, a verified get, list, delete) the same way for both, and `cache` keeps the local
copies a process works on. A local path needs nothing new; a URL needs `s3fs` (installed).
"""
