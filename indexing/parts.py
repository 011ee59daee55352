"""Where the embeddings dataset's Parquet parts are, as indexing reads them.

The build reads vectors from them (indexing/build/sources.py) and the relations read fingerprints
from them (indexing/relations/fingerprints.py); both find a ledger row's part by `resolve_part`, so
the fingerprint verified is the one of the very pixels the vector was computed from. It imports
nothing of indexing/.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings


def dataset_dir(settings: Settings, model_version: str) -> Path:
    """The embeddings part's own answer (same sanitising of the model version)."""
    from embeddings.dataset import dataset_dir as _dataset_dir

    return _dataset_dir(settings, model_version)


def list_parts(settings: Settings, model_version: str) -> list[Path]:
    """Complete Parquet parts, oldest first (the embeddings part's order: mtime, then name), so the
    later part wins ties of embedded_at exactly as `embeddings.dataset.read_latest` decides."""
    from embeddings.dataset import list_parts as _list_parts

    return _list_parts(settings, model_version)


def resolve_part(settings: Settings, model_version: str, part: str) -> Path | None:
    """A ledger's parquet_part (absolute, or relative to DATA_DIR / the dataset) as an existing path."""
    if not part:
        return None
    raw = Path(part)
    candidates = [raw] if raw.is_absolute() else [
        settings.resolved_data_dir / raw,
        settings.embeddings_dir / raw,
        dataset_dir(settings, model_version) / raw,
    ]
    candidates.append(dataset_dir(settings, model_version) / raw.name)
    return next((c for c in candidates if c.is_file()), None)
