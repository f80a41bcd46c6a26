"""Images as PNG data URLs, so that one JSON response carries everything the page draws."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 (H, W) grayscale or (H, W, 3) RGB -> "data:image/png;base64,..."."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
