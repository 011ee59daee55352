"""Where a model's forward pass runs: ONNX Runtime (the default) or torch.

Both take a stacked (n, 3, 224, 224) float32 batch and give (n, dim) float32
raw (un-normalised) features; the Embedder does the rest (rotations, L2). ONNX
Runtime holds ResNet50 in ~160 MB where torch needs ~900 MB (torch alone is
~700 MB of libraries), and runs it at least as fast on CPU (docs/embeddings.md
has the figures). The ONNX file is exported from the same torch model and
weights (embeddings/onnx_export.py) and a test proves the vectors equal.
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

RUNTIMES = ("onnx", "torch")


class Backend(Protocol):
    runtime: str

    def features(self, x: np.ndarray) -> np.ndarray:
        """(n, 3, H, W) float32 → (n, dim) float32 raw features. Thread-safe."""
        ...


class TorchBackend:
    """The torch module itself (what the ONNX file is exported from; EMBEDDING_RUNTIME=torch)."""

    runtime = "torch"

    def __init__(self, model: torch.nn.Module, channels_last: bool = True) -> None:
        self.model = model
        self.channels_last = channels_last

    def features(self, x: np.ndarray) -> np.ndarray:
        import torch

        t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.model(t)
        return out.float().reshape(out.shape[0], -1).numpy()


class OnnxBackend:
    """An ONNX Runtime CPU session over the exported model; `run` releases the GIL and is thread-safe."""

    runtime = "onnx"

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0 = one per physical core, as torch's default
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers etc. are not ours to fix
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        release_freed_heap()

    def features(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(out.shape[0], -1)


def release_freed_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; a no-op elsewhere).

    Building an ONNX Runtime session (graph optimisation, weight layout) frees as much as it keeps,
    and glibc holds on to it: ResNet50's session left 236 MB resident, 93 MB after the trim, same
    outputs (bench/model_memory.py).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
