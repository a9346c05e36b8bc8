"""Decoding uploaded images with limits, before any face work.

The byte size is checked first, then the pixel count from the header alone (Pillow reads the
header lazily), so a 50-megapixel image is refused without decoding it. JPEGs are decoded at a
reduced DCT scale when they are much larger than needed, EXIF orientation is applied (phones store
portrait photos rotated), and the result is downscaled to the detection size.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Pillow and numpy are imported where images are decoded (in the face engine's workers), not by
# the api process that only imports ImageLimits.

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    max_side: int


class ImageProblem(Exception):
    """Raised by decoding; ``kind`` maps to an ``identity.*`` error in the caller."""

    def __init__(self, kind: str, message: str) -> None:
        # kind: "image_invalid" | "image_too_large" | "image_too_many_pixels"
        super().__init__(kind, message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def probe_image(data: bytes, limits: ImageLimits) -> ImageInfo:
    """Check size, format and pixel count from the header only; no pixel data is decoded."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.max_bytes:
        raise ImageProblem("image_too_large", f"{len(data)} bytes > {limits.max_bytes}")
    if not data:
        raise ImageProblem("image_invalid", "empty file")
    try:
        with warnings.catch_warnings():
            # Our own limit applies below; Pillow's bomb warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt, (w, h) = im.format, im.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        if isinstance(e, Image.DecompressionBombError):
            raise ImageProblem("image_too_many_pixels", str(e)) from None
        raise ImageProblem("image_invalid", "not a readable image") from None
    if fmt not in ALLOWED_FORMATS:
        raise ImageProblem("image_invalid", f"format {fmt} not accepted")
    if w <= 0 or h <= 0:
        raise ImageProblem("image_invalid", "empty image")
    if w * h > limits.max_pixels:
        raise ImageProblem("image_too_many_pixels", f"{w}x{h} > {limits.max_pixels} pixels")
    return ImageInfo(fmt, w, h)


def decode_for_detection(data: bytes, limits: ImageLimits) -> tuple[np.ndarray, ImageInfo, float]:
    """Decode to an RGB array whose longer side is at most ``limits.max_side``.

    Returns the array, the original header info and the scale applied (<= 1; never upscaled).
    """
    import numpy as np
    from PIL import Image, ImageOps

    info = probe_image(data, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                scale = min(1.0, limits.max_side / max(info.width, info.height))
                if info.format == "JPEG" and scale < 0.5:
                    # DCT-domain reduction: decodes only what the target size needs.
                    im.draft("RGB", (max(1, round(info.width * scale)), max(1, round(info.height * scale))))
                im.load()
                loaded_size = im.size
                oriented = ImageOps.exif_transpose(im)
                swapped = oriented.size != loaded_size
                rgb = oriented.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        # Truncated or corrupt pixel data behind a valid-looking header.
        raise ImageProblem("image_invalid", "corrupt image data") from None
    w, h = rgb.size
    if max(w, h) > limits.max_side:
        s = limits.max_side / max(w, h)
        rgb = rgb.resize(
            (max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR, reducing_gap=2.0
        )
    original_w = info.height if swapped else info.width
    arr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    return arr, info, rgb.size[0] / original_w
