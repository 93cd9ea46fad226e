"""Image conversion for the policy side, free of ROS and message types.

PyPI ROS 2 has no ``cv_bridge`` (and apt's ``cv_bridge`` is built against NumPy 1.x, which cannot
share a process with the model's NumPy 2), so every conversion between a camera's wire format
and the RGB8 arrays the model takes lives here, in one tested module. ``ros_conversions`` is
the only caller that knows about ``sensor_msgs``.

Raw encodings follow ``sensor_msgs/image_encodings``: note that ROS's ``yuv422`` is UYVY byte
order (as cv_bridge treats it) and ``yuv422_yuy2`` is YUYV. Compressed images (JPEG, PNG) are
decoded with OpenCV, imported only when first needed.

Every function returns or takes an ``(H, W, 3)`` C-contiguous ``uint8`` RGB array. Bad input
raises ``ImageCodecError`` (``UnsupportedEncoding`` for an encoding this module does not
convert) with a message that names the encoding and the shape.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ImageCodecError",
    "UnsupportedEncoding",
    "RAW_ENCODINGS",
    "COMPRESSED_FORMATS",
    "decode_raw",
    "encode_raw",
    "decode_compressed",
    "encode_compressed",
    "as_rgb8",
    "resize_rgb",
    "RESIZE_MODES",
]


class ImageCodecError(ValueError):
    """An image this module refuses: the message says why and names the encoding/shape."""


class UnsupportedEncoding(ImageCodecError):
    """An encoding (raw or compressed) that this module does not convert."""


# encoding -> (channels, bytes per channel)
_PLANAR = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono8": (1, 1),
    "8UC1": (1, 1),
    "8UC3": (3, 1),  # treated as BGR, as cv_bridge/OpenCV do
    "8UC4": (4, 1),  # treated as BGRA
    "mono16": (1, 2),
    "16UC1": (1, 2),
    "rgb16": (3, 2),
    "bgr16": (3, 2),
}
# packed 4:2:2, two pixels in four bytes
_PACKED_422 = {
    "yuv422": "uyvy",
    "uyvy": "uyvy",
    "yuv422_yuy2": "yuyv",
    "yuyv": "yuyv",
}
RAW_ENCODINGS = tuple(_PLANAR) + tuple(_PACKED_422)
COMPRESSED_FORMATS = ("jpeg", "png")


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - cv2 is in every venv that runs cameras
        raise ImageCodecError(
            "OpenCV (opencv-python-headless) is needed for compressed and YUV images; install it in this venv"
        ) from exc
    return cv2


def _check_shape(encoding: str, height: int, width: int) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise ImageCodecError(f"image '{encoding}' has zero size ({width}x{height}): frame refused")


def decode_raw(
    encoding: str,
    data,
    height: int,
    width: int,
    step: int = 0,
    is_bigendian: bool = False,
) -> np.ndarray:
    """Raw image bytes (a sensor_msgs/Image's fields) -> ``(H, W, 3)`` uint8 RGB.

    ``step`` is the row length in bytes (0: tightly packed); padding at the end of each row is
    dropped. Grayscale is replicated to three channels, alpha is dropped, 16-bit images keep
    their top 8 bits (value >> 8), packed YUV 4:2:2 is converted with BT.601 as OpenCV does.
    """
    enc = str(encoding)
    height, width = int(height), int(width)
    _check_shape(enc, height, width)
    if enc in _PLANAR:
        channels, depth = _PLANAR[enc]
        row_bytes = width * channels * depth
    elif enc in _PACKED_422:
        if width % 2:
            raise ImageCodecError(f"image '{enc}' has an odd width ({width}x{height}): packed 4:2:2 needs an even width")
        row_bytes = width * 2
        channels, depth = 2, 1
    else:
        raise UnsupportedEncoding(
            f"unsupported image encoding '{enc}' ({width}x{height}); supported raw encodings: {', '.join(RAW_ENCODINGS)}"
        )
    step = int(step) or row_bytes
    if step < row_bytes:
        raise ImageCodecError(f"image '{enc}' {width}x{height}: step {step} is smaller than a row ({row_bytes} bytes)")
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    need = step * (height - 1) + row_bytes
    if buf.size < need:
        raise ImageCodecError(
            f"image '{enc}' {width}x{height} step {step}: {buf.size} bytes of data, need {need}"
        )
    if buf.size >= step * height:
        rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    else:  # last row unpadded
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))

    if enc in _PACKED_422:
        packed = np.ascontiguousarray(rows).reshape(height, width, 2)
        cv2 = _cv2()
        code = cv2.COLOR_YUV2RGB_UYVY if _PACKED_422[enc] == "uyvy" else cv2.COLOR_YUV2RGB_YUYV
        return np.ascontiguousarray(cv2.cvtColor(packed, code))

    if depth == 2:
        dt = np.dtype(">u2" if is_bigendian else "<u2")
        pix = np.ascontiguousarray(rows).view(dt).reshape(height, width, channels)
        pix = (pix >> 8).astype(np.uint8)
    else:
        pix = rows.reshape(height, width, channels)

    if enc in ("rgb8", "rgba8", "rgb16"):
        out = pix[..., :3]
    elif enc in ("bgr8", "bgra8", "8UC3", "8UC4", "bgr16"):
        out = pix[..., 2::-1]
    else:  # mono
        out = np.repeat(pix, 3, axis=2)
    return np.ascontiguousarray(out)


def encode_raw(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[bytes, int]:
    """``(H, W, 3)`` uint8 RGB -> (data, step) in ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8,
    mono16, yuv422 / uyvy, yuv422_yuy2 / yuyv). Used by tests, emulated cameras and replay."""
    rgb = as_rgb8(rgb)
    h, w = rgb.shape[:2]
    enc = str(encoding)
    if enc == "rgb8":
        out = rgb
    elif enc in ("bgr8", "8UC3"):
        out = rgb[..., ::-1]
    elif enc == "rgba8":
        out = np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2)
    elif enc in ("bgra8", "8UC4"):
        out = np.concatenate([rgb[..., ::-1], np.full((h, w, 1), 255, np.uint8)], axis=2)
    elif enc in ("mono8", "8UC1"):
        out = _luma(rgb)
    elif enc in ("mono16", "16UC1"):
        out = (_luma(rgb).astype("<u2") * 257)
    elif enc in _PACKED_422:
        if w % 2:
            raise ImageCodecError(f"cannot encode '{enc}' with an odd width ({w}x{h})")
        yuv = _rgb_to_yuv_bt601(rgb)
        y = yuv[..., 0]
        u = ((yuv[:, 0::2, 1].astype(np.uint16) + yuv[:, 1::2, 1]) // 2).astype(np.uint8)
        v = ((yuv[:, 0::2, 2].astype(np.uint16) + yuv[:, 1::2, 2]) // 2).astype(np.uint8)
        out = np.empty((h, w, 2), np.uint8)
        if _PACKED_422[enc] == "uyvy":
            out[:, 0::2, 0] = u
            out[:, 1::2, 0] = v
            out[..., 1] = y
        else:
            out[..., 0] = y
            out[:, 0::2, 1] = u
            out[:, 1::2, 1] = v
    else:
        raise UnsupportedEncoding(f"cannot encode to '{enc}'; supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16, yuv422, yuv422_yuy2")
    out = np.ascontiguousarray(out)
    return out.tobytes(), int(out.strides[0])


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)


def _rgb_to_yuv_bt601(rgb: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV)


def _compressed_kind(fmt: str) -> str:
    """sensor_msgs/CompressedImage.format: 'jpeg', 'png', 'rgb8; jpeg compressed bgr8', ..."""
    f = str(fmt).lower()
    if "compresseddepth" in f:
        raise UnsupportedEncoding(f"unsupported compressed format '{fmt}': compressedDepth is a depth stream, not a colour image")
    if "jpeg" in f or "jpg" in f:
        return "jpeg"
    if "png" in f:
        return "png"
    raise UnsupportedEncoding(f"unsupported compressed format '{fmt}'; supported: {', '.join(COMPRESSED_FORMATS)}")


def decode_compressed(fmt: str, data) -> np.ndarray:
    """A compressed image (JPEG or PNG bytes) -> ``(H, W, 3)`` uint8 RGB.

    Grayscale is replicated, alpha dropped, 16-bit PNG keeps its top 8 bits.
    """
    kind = _compressed_kind(fmt)
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    if buf.size == 0:
        raise ImageCodecError(f"compressed image '{fmt}' is empty: frame refused")
    cv2 = _cv2()
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageCodecError(f"compressed image '{fmt}' ({buf.size} bytes) could not be decoded as {kind}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise UnsupportedEncoding(f"compressed image '{fmt}' decodes to {img.dtype}; only 8- and 16-bit images are converted")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    return np.ascontiguousarray(img[..., 2::-1])  # BGR(A) -> RGB


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """``(H, W, 3)`` uint8 RGB -> JPEG or PNG bytes."""
    kind = _compressed_kind(fmt)
    rgb = as_rgb8(rgb)
    cv2 = _cv2()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
    ok, enc = cv2.imencode("." + ("jpg" if kind == "jpeg" else "png"), np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ImageCodecError(f"could not encode {rgb.shape} as {kind}")
    return enc.tobytes()


def as_rgb8(image: np.ndarray) -> np.ndarray:
    """Check (and lightly coerce) an array to ``(H, W, 3)`` C-contiguous uint8 RGB.

    Accepts (H, W) grayscale and (H, W, 1) / (H, W, 4) arrays; refuses zero-size, other ranks,
    and non-uint8 dtypes (scaling floats or 16-bit is a decision the caller must make).
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ImageCodecError(f"image array must be uint8, got {arr.dtype} with shape {arr.shape}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageCodecError(f"image array must be (H, W, 3) RGB, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageCodecError(f"image array has zero size: shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


RESIZE_MODES = ("stretch", "letterbox", "crop")


def resize_rgb(rgb: np.ndarray, width: int, height: int, mode: str = "stretch") -> np.ndarray:
    """Resize RGB8 to ``width`` x ``height``.

    ``stretch``: plain resize (MolmoAct2's processors resize the whole frame, they neither pad
    nor crop, so this is what its checkpoints were trained with); ``letterbox``: keep the aspect
    ratio and pad with black; ``crop``: keep the aspect ratio and centre-crop. A frame already at
    the target size is returned unchanged (no copy, no filtering). Area interpolation when
    shrinking, bilinear when enlarging.
    """
    rgb = as_rgb8(rgb)
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ImageCodecError(f"target size must be positive, got {width}x{height}")
    if mode not in RESIZE_MODES:
        raise ImageCodecError(f"resize mode '{mode}' must be one of {', '.join(RESIZE_MODES)}")
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    cv2 = _cv2()

    def _rs(img, tw, th):
        interp = cv2.INTER_AREA if (tw < img.shape[1] and th < img.shape[0]) else cv2.INTER_LINEAR
        return cv2.resize(img, (tw, th), interpolation=interp)

    if mode == "stretch":
        return np.ascontiguousarray(_rs(rgb, width, height))
    if mode == "letterbox":
        scale = min(width / w, height / h)
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        out = np.zeros((height, width, 3), np.uint8)
        y0, x0 = (height - th) // 2, (width - tw) // 2
        out[y0 : y0 + th, x0 : x0 + tw] = _rs(rgb, tw, th)
        return out
    scale = max(width / w, height / h)
    tw, th = max(width, round(w * scale)), max(height, round(h * scale))
    big = _rs(rgb, tw, th)
    y0, x0 = (th - height) // 2, (tw - width) // 2
    return np.ascontiguousarray(big[y0 : y0 + height, x0 : x0 + width])
