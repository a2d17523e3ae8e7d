"""One conversion of every image and video frame the models see (DIFT frames and overlays, GRPO and eval frames) to
8-bit RGB.

PIL's own `convert("RGB")` clips a 16-bit image (mode `I;16`, e.g. a 16-bit grayscale PNG or a `datasets.Image` of a
`uint16` array) at 255, so nearly every pixel turns white. Here 16-bit data are scaled to 8 bits (65535 -> 255), and
what cannot be read as 8-bit RGB without guessing (32-bit integer or float PIL images, integer arrays outside 0-255)
is refused with an error that says how to convert it.
"""

from __future__ import annotations

import numpy as np


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb_array(value, where: str = "image") -> np.ndarray:
    """An `(H, W, 3)` `uint8` array from a PIL image or an `(H, W)`, `(H, W, 1)`, `(H, W, 3)` or `(H, W, 4)` array.

    `uint16` arrays and 16-bit PIL images are scaled to 8 bits; alpha is dropped; gray is repeated on 3 channels;
    float arrays are clipped to 0-255.

    Args:
        value (`PIL.Image.Image` or `np.ndarray`): the image.
        where (`str`, *optional*): names the image in error messages, e.g. `"row 'clip3/...': frame 2"`.

    Raises:
        ValueError: naming `where`, for an image that has no unambiguous 8-bit RGB reading.

    Example:

    ```python
    >>> import numpy as np
    >>> from thinker4d.images import to_rgb_array
    >>> to_rgb_array(np.full((2, 2), 65535, dtype=np.uint16))[0, 0].tolist()
    [255, 255, 255]
    ```
    """
    if hasattr(value, "mode") and hasattr(value, "convert"):  # a PIL image
        mode = value.mode
        if mode in _SIXTEEN_BIT_MODES:
            return to_rgb_array(np.asarray(value).astype(np.uint16), where)
        if mode in ("I", "F"):
            kind = "32-bit integer" if mode == "I" else "32-bit float"
            raise ValueError(
                f"{where}: a {kind} image (PIL mode {mode!r}) has no 8-bit reading without knowing its range; save it "
                "as 8-bit (or 16-bit) RGB or grayscale, e.g. PNG."
            )
        return np.asarray(value if mode == "RGB" else value.convert("RGB"))
    arr = np.asarray(value)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., :3] if arr.shape[-1] != 1 else arr
    elif arr.ndim != 2:
        raise ValueError(f"{where}: an image must be H x W, H x W x 1, 3 or 4, got an array of shape {arr.shape}.")
    arr = _to_uint8(arr, where)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def to_rgb_image(value, where: str = "image"):
    """An RGB `PIL.Image.Image` from what [`to_rgb_array`] takes (an 8-bit RGB image is returned as it is)."""
    if getattr(value, "mode", None) == "RGB" and hasattr(value, "convert"):
        return value
    from PIL import Image

    return Image.fromarray(to_rgb_array(value, where))


def _to_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:  # uint16 in either byte order
        return np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(arr, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{where}: {arr.dtype} values span {lo}..{hi}, outside 0-255; pass uint8 (8-bit) or uint16 (16-bit) "
                "pixels."
            )
        return arr.astype(np.uint8)
    raise ValueError(f"{where}: unsupported pixel type {arr.dtype}; pass uint8 or uint16 pixels.")


__all__ = ["to_rgb_array", "to_rgb_image"]
