"""Small generated images for the feature modules' tests: grey arrays and fingerprints of generated photos."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from duplicates.fingerprint import Fingerprint


@pytest.fixture(scope="session")
def fp_of() -> Callable[[Image.Image], Fingerprint]:
    """The fingerprint of `img` as an upload of it gets one (encoded, loaded back)."""
    from duplicates.edits import encode
    from duplicates.fingerprint import fingerprint
    from embeddings.loading import load_image

    def fp(img: Image.Image) -> Fingerprint:
        raw = encode(img)
        return fingerprint(load_image(raw), raw)

    return fp


@pytest.fixture(scope="session")
def grey() -> np.ndarray:
    """A generated photo's luma at thumbnail size (160 x 120), float32, blurred as the pixel stage blurs it."""
    from duplicates.features import pixels
    from duplicates.synthetic import shot

    return pixels.prepare(np.asarray(shot(5001, 0).convert("L").resize((160, 120)), np.float32))
