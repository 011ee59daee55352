"""The Assets the DAGs produce and consume, one per model name.

Assets are keyed by the model *name* (known when the DAG file is parsed),
and the event extra carries the exact `model_version` (known only once the
model is loaded). Tasks add events through an AssetAlias, so a run that
embedded nothing, or published nothing, emits no event at all.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

# The registry names of embeddings.models (kept here so parsing never imports torch;
# tests/dags check the two lists agree).
MODEL_NAMES: tuple[str, ...] = ("places365-resnet50", "efficientnet-lite0")

EMBEDDINGS_ALIAS = AssetAlias(name="image-embeddings")
INDEX_ALIAS = AssetAlias(name="image-index")


def embeddings_asset(model: str) -> Asset:
    """The Asset updated whenever new vectors of `model` land in the Parquet dataset."""
    return Asset(name=f"image-embeddings/{model}", uri=f"image-embeddings://{model}", group="image-similarity")


def index_asset(model: str) -> Asset:
    """The Asset updated whenever a new index version of `model` is published."""
    return Asset(name=f"image-index/{model}", uri=f"image-index://{model}", group="image-similarity")


EMBEDDINGS_ASSETS: tuple[Asset, ...] = tuple(embeddings_asset(m) for m in MODEL_NAMES)
INDEX_ASSETS: tuple[Asset, ...] = tuple(index_asset(m) for m in MODEL_NAMES)


def base_model(spec: str) -> str:
    """`places365-resnet50@seed-pad224+rot4` -> `places365-resnet50` (a spec is name[@preprocess][+variant])."""
    return spec.strip().split("+", 1)[0].split("@", 1)[0]


def default_model() -> str:
    """The settings' model (EMBEDDING_MODEL, else Places365 where its weights are present, else
    efficientnet-lite0: the rule the demo and the server follow), when it names a registry model.

    Read at parse time: a bad setting falls back to the first model here and is reported by the tasks.
    """
    try:
        from core.settings import SettingsError, get_settings
    except ImportError:  # the repo root is not on this parser's PYTHONPATH: the tasks will say so
        return MODEL_NAMES[0]
    try:
        configured = get_settings().embedding_model
    except SettingsError:
        return MODEL_NAMES[0]
    return configured if base_model(configured) in MODEL_NAMES else MODEL_NAMES[0]


def model_choices() -> list[str]:
    """The models offered by the trigger form: the registry names, plus EMBEDDING_MODEL's full spec."""
    configured = default_model()
    return list(MODEL_NAMES) if configured in MODEL_NAMES else [configured, *MODEL_NAMES]


def model_of_asset_name(name: str) -> str | None:
    """`image-embeddings/<model>` -> `<model>` (None for any other asset)."""
    prefix = "image-embeddings/"
    return name[len(prefix):] if name.startswith(prefix) and name[len(prefix):] in MODEL_NAMES else None
