"""Shared ground for every part: settings, database access, migrations, a private PostgreSQL."""

import logging

# faiss's loader logs at INFO each CPU-specific build it tries and the wheel does not have ("Could not load
# library with AVX2 support ... No module named 'faiss.swigfaiss_avx2'") before loading the generic one:
# read in a server or task log, that looks like a failure. Every process imports `core` before faiss.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
