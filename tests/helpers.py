"""Small helpers shared by tests."""

from __future__ import annotations

from core.sample_data import generate_photos, sample_formats_dir, sample_photos

__all__ = ["TABLES", "generate_photos", "sample_formats_dir", "sample_photos"]

# Our tables and the seed's, children first (for TRUNCATE).
TABLES = ("image_embeddings", "index_versions", "images", "events")
