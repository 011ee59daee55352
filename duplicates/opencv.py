"""OpenCV for the duplicate decision, set to one thread the first time it is used.

Fingerprints and verification work on 160-480 px images: OpenCV's thread pool
only spins on them (measured 2-10x slower on 2 shared cores with the default
pool). The server (upload checks, event groups) and the pipeline workers
(fingerprints) all reach OpenCV through `cv2()`, so the setting is made once,
in one place, in every process that decides duplicates.
"""

from __future__ import annotations

from types import ModuleType

_CV2: ModuleType | None = None


def cv2() -> ModuleType:
    """The cv2 module, with `setNumThreads(1)` applied once per process."""
    global _CV2
    if _CV2 is None:
        import cv2 as module

        module.setNumThreads(1)
        _CV2 = module
    return _CV2
