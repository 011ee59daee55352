"""The int8 model (`+int8` model versions): the fp32 ONNX export quantised by onnxruntime.quantization.

Static quantisation, QDQ format, weights int8 per channel, activations uint8 per tensor from MinMax
ranges over a calibration set of GENERATED photos (core.sample_data.generate_photos, fixed seed, the
model's default preprocessing), so every host that quantises the same export gets the same file, with or
without the sample data. The nodes named by the model's `int8_fp32_nodes` stay fp32 (efficientnet-lite0:
the stem and the first two stages, where int8 cost the most: quantised too they put generated photos at
median cosine 0.979, min 0.91, to fp32; left in fp32, 0.998 and 0.994, for 1.6x instead of 2.1x the speed).
Dynamic quantisation was measured and not used: on efficientnet-lite0 its vectors are at cosine 0.77-0.91
to fp32's and it runs 4x slower than fp32 (ConvInteger has no fast CPU kernel). Figures: bench/int8.py,
docs/embeddings.md.

The file is cached like the fp32 export (embeddings/onnx_export.py): MODEL_CACHE_DIR/<model>+int8-<tag>.onnx
with a sidecar `<file>.json` written last; the tag carries the fp32 export's tag (weights sha256, package
versions, exporter version) and this quantiser's own (onnxruntime and onnx versions, method, calibration,
QUANTIZE_VERSION). `ensure` makes a missing or stale file in a SUBPROCESS (`python -m embeddings --model
<model>+int8 export --no-publish`; after the fp32 export it needs), so the search server keeps onnx and the
quantiser out of its memory. Before the file is used it is proven: its vectors of held-out generated photos
must be within MIN_COSINE of the fp32 file's. The pipeline publishes it as it publishes the fp32 file
(pointer DATA_DIR/models/<model>+int8.json), and a host that cannot quantise (no torch/onnx, or no source
weights) runs the published one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embeddings import onnx_export
from embeddings.onnx_export import OnnxArtifact, is_current
from embeddings.weights import sha256_file

if TYPE_CHECKING:
    from core.settings import Settings

# Bump when the quantisation changes (method, options, calibration set).
QUANTIZE_VERSION = 1
SUFFIX = "int8"
METHOD = "static QDQ, weights int8 per channel, activations uint8 per tensor, MinMax; fp32: {}"
CALIBRATION_PHOTOS, CALIBRATION_SEED, CALIBRATION_BATCH = 64, 2801, 8
CHECK_PHOTOS, CHECK_SEED = 16, 2802
# The proof before a quantised file is used: every held-out photo's int8 vector within this cosine of fp32's.
# Measured (bench/int8.py, one forward): min 0.979 on the shared photos, 0.994 on generated ones (these 16: 0.995);
# 0.97 leaves a margin and still refuses a broken quantisation (all nodes int8: 0.91; dynamic: 0.77).
MIN_COSINE = 0.97
_FAILED: dict[tuple[str, str], str] = {}


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


class QuantizeError(RuntimeError):
    """The quantisation failed or its vectors are too far from fp32's; the message says which."""


def artifact_name(model: str) -> str:
    """What the int8 file of `model` is called and published as: `efficientnet-lite0+int8`."""
    return f"{model}+{SUFFIX}"


def artifact(model: str, settings: Settings) -> OnnxArtifact:
    """Where the int8 file for `model` with the configured weights lives (made or not)."""
    fp32 = onnx_export.artifact(model, settings)
    tag = {**fp32.tag, "model": artifact_name(model), "fp32_model": model,
           "quantize_version": str(QUANTIZE_VERSION), "quantization": METHOD.format(" ".join(fp32_nodes(model))),
           "calibration": f"generate_photos seed {CALIBRATION_SEED} x{CALIBRATION_PHOTOS}, default preprocessing",
           "onnxruntime": package_version("onnxruntime"), "onnx": package_version("onnx")}
    digest = hashlib.sha256(json.dumps(tag, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(settings.resolved_model_cache_dir) / f"{artifact_name(model)}-{digest}.onnx"
    return OnnxArtifact(artifact_name(model), fp32.source, path, tag)


def fp32_nodes(model: str) -> tuple[str, ...]:
    """The node-name prefixes of `model`'s ONNX graph left in fp32; QuantizeError if it has no int8 model."""
    from embeddings.models import MODELS

    nodes = MODELS[model].int8_fp32_nodes
    if nodes is None:
        raise QuantizeError(f"{model} has no int8 model")
    return nodes


def model_inputs(model: str, count: int, seed: int) -> np.ndarray:
    """(count, 3, 224, 224) float32: generated photos through the model's default preprocessing."""
    from core.sample_data import generate_photos
    from embeddings.loading import load_image
    from embeddings.models import MODELS
    from embeddings.preprocess import PREPROCESSES

    spec = MODELS[model]
    pre = PREPROCESSES[spec.default_preprocess]
    with tempfile.TemporaryDirectory(prefix="int8-calibration-") as tmp:
        paths = generate_photos(Path(tmp), count, seed=seed)
        return np.stack([pre(load_image(p, draft_side=pre.draft_side, draft_long_side=pre.draft_long_side),
                             spec.norm) for p in paths])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, dim) feature arrays."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


def quantize(art: OnnxArtifact, fp32: OnnxArtifact) -> OnnxArtifact:
    """Quantise the fp32 file `fp32` into `art` (file, then sidecar), after proving its vectors.

    Imports onnx and onnxruntime.quantization: run it in a process that may keep them (the CLI, a subprocess).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from embeddings.backends import OnnxBackend

    model = str(art.tag["fp32_model"])
    calibration = model_inputs(model, CALIBRATION_PHOTOS, CALIBRATION_SEED)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calibration[i:i + CALIBRATION_BATCH]}
                                 for i in range(0, len(calibration), CALIBRATION_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    art.path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{art.path.name}.", dir=art.path.parent) as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32.path), str(prepared))  # shape inference and graph fusions first, as advised
        import onnx

        keep = fp32_nodes(model)
        exclude = [n.name for n in onnx.load(str(prepared)).graph.node if n.name.startswith(keep)]
        if not exclude:
            raise QuantizeError(f"no node of the {model} graph is named {' or '.join(keep)}: the export changed")
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)
        # Proof before use: held-out photos' int8 vectors close to the fp32 file's.
        check = model_inputs(model, CHECK_PHOTOS, CHECK_SEED)
        cos = cosines(OnnxBackend(out).features(check), OnnxBackend(fp32.path).features(check))
        if float(cos.min()) < MIN_COSINE:
            raise QuantizeError(f"the int8 model of {model} is too far from fp32: cosine {float(cos.min()):.3f} "
                                f"< {MIN_COSINE} on held-out photos")
        os.chmod(out, 0o644)
        os.replace(out, art.path)
    side = {"tag": art.tag, "onnx_sha256": sha256_file(art.path), "source": str(art.source),
            "fp32_onnx": str(fp32.path), "fp32_onnx_sha256": json.loads(fp32.sidecar.read_text())["onnx_sha256"],
            "check_cosine_min": round(float(cos.min()), 5)}
    side_tmp = art.sidecar.with_name(art.sidecar.name + ".part")
    side_tmp.write_text(json.dumps(side, indent=1, sort_keys=True))
    os.replace(side_tmp, art.sidecar)
    return art


def ensure(model: str, settings: Settings) -> OnnxArtifact:
    """The current int8 file for `model`, quantised in a subprocess if needed (after the fp32 export).

    A host that cannot make it (no torch/onnx to export and quantise, or no source weights) runs the one the
    pipeline published, or says what to do (ModelUnavailable).
    """
    from embeddings.models import ModelUnavailable

    name = artifact_name(model)
    missing = onnx_export.missing_export_modules(model)
    if missing:
        return onnx_export.published(name, settings, why=f"this install has no {', '.join(missing)} to quantise it: "
                         "a server-only install")
    try:
        onnx_export.source_weights(model, settings)
    except ModelUnavailable as exc:
        return onnx_export.published(name, settings, why=str(exc))
    art = artifact(model, settings)
    if is_current(art):
        return art
    failed_key = (name, art.path.name)
    if failed_key in _FAILED:
        raise ModelUnavailable(_FAILED[failed_key])
    onnx_export.ensure(model, settings)  # the file it is made from (exported in its own subprocess if needed)
    with open(art.path.with_name(art.path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_current(art):  # another process made it while we waited
            return art
        reason = onnx_export.export_in_subprocess(f"{model}+plain+{SUFFIX}", settings)
        if reason is not None or not is_current(art):
            _FAILED[failed_key] = f"cannot quantise {model} to int8: {reason or 'no file written'}"
            raise ModelUnavailable(_FAILED[failed_key])
    return art
