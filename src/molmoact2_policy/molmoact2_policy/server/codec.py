"""Wire encodings of the ``/act`` protocol (no torch, no web framework: the robot PC imports this).

* ``application/json``: json_numpy's format, as the official servers speak it: an ndarray is
  ``{"__numpy__": base64(raw bytes), "dtype": "<f4", "shape": [...]}``; everything else plain JSON.
* ``application/x-molmoact2-binary`` (ours, negotiated by content type): ``b"MA2B"`` + uint32 LE
  header length + a JSON header (plain values, and per array its dtype, shape, offset, length) +
  the arrays' raw bytes back to back. No base64 and no JSON parsing of pixel data.
* ``images_jpeg``: in JSON requests, cameras may instead be sent as ``{"images_jpeg": {name: base64 JPEG}}``,
  keyed by the bare camera names as the official YAM client does (``official.py`` has the layouts).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np

JSON = "application/json"
BINARY = "application/x-molmoact2-binary"
_MAGIC = b"MA2B"


class CodecError(ValueError):
    """A body that cannot be decoded; the message says what is wrong."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {"__numpy__": base64.b64encode(arr.tobytes()).decode("ascii"), "dtype": arr.dtype.str,
                "shape": list(arr.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _hook(d: dict) -> Any:
    if "__numpy__" in d:
        try:
            raw = base64.b64decode(d["__numpy__"])
            return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"])
        except (ValueError, TypeError, KeyError) as exc:
            raise CodecError(f"bad json_numpy array: {exc}") from None
    return d


def dumps_json(obj: Any) -> bytes:
    return json.dumps(obj, default=_default).encode("utf-8")


def loads_json(data: bytes) -> Any:
    try:
        return json.loads(data, object_hook=_hook)
    except json.JSONDecodeError as exc:
        raise CodecError(f"body is not JSON: {exc}") from None


def dumps_binary(obj: dict) -> bytes:
    header: dict[str, Any] = {}
    blobs: list[bytes] = []
    offset = 0
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            raw = arr.data.cast("B") if arr.size else b""
            header[key] = {"__array__": True, "dtype": arr.dtype.str, "shape": list(arr.shape),
                           "offset": offset, "nbytes": arr.nbytes}
            blobs.append(raw)
            offset += arr.nbytes
        else:
            header[key] = value
    h = json.dumps(header, default=_default).encode("utf-8")
    return b"".join([_MAGIC, struct.pack("<I", len(h)), h, *blobs])


def loads_binary(data: bytes) -> dict:
    mv = memoryview(data)
    if len(mv) < 8 or bytes(mv[:4]) != _MAGIC:
        raise CodecError("body is not molmoact2 binary (bad magic)")
    (hlen,) = struct.unpack("<I", mv[4:8])
    if 8 + hlen > len(mv):
        raise CodecError("binary body truncated in its header")
    try:
        header = json.loads(bytes(mv[8:8 + hlen]), object_hook=_hook)
    except json.JSONDecodeError as exc:
        raise CodecError(f"binary header is not JSON: {exc}") from None
    base = 8 + hlen
    out = {}
    for key, value in header.items():
        if isinstance(value, dict) and value.get("__array__"):
            start, n = base + int(value["offset"]), int(value["nbytes"])
            if start + n > len(mv):
                raise CodecError(f"binary body truncated in array '{key}'")
            out[key] = np.frombuffer(mv[start:start + n], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
        else:
            out[key] = value
    return out


def encode(obj: dict, content_type: str) -> bytes:
    return dumps_binary(obj) if content_type == BINARY else dumps_json(obj)


def decode(data: bytes, content_type: str | None) -> dict:
    ct = (content_type or JSON).split(";")[0].strip().lower()
    if ct == BINARY:
        obj = loads_binary(data)
    elif ct in (JSON, "text/plain", ""):
        obj = loads_json(data)
    else:
        raise CodecError(f"unsupported content type '{ct}' (use {JSON} or {BINARY})")
    if not isinstance(obj, dict):
        raise CodecError("body must be an object")
    return obj


def jpeg_encode(rgb: np.ndarray, quality: int = 90) -> str:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise CodecError("JPEG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def jpeg_decode(b64: str) -> np.ndarray:
    import cv2

    try:
        raw = np.frombuffer(base64.b64decode(b64), np.uint8)
    except (ValueError, TypeError) as exc:
        raise CodecError(f"images_jpeg entry is not base64: {exc}") from None
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if img is None:
        raise CodecError("images_jpeg entry is not a JPEG image")
    return np.ascontiguousarray(img[..., ::-1])
