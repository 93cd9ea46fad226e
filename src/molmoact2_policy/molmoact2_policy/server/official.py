"""The request layouts of the official allenai/molmoact2 ``/act`` clients, and how we map them.

Facts, read from allenai/molmoact2 (``examples/droid/host_server_droid.py``,
``examples/yam/host_server_yam.py``, ``examples/_common/server.py``, ``examples/yam/molmoact_client.py``
``MolmoActHTTP``, ``sim_eval/inference/client.py`` + ``common.py`` ``DroidClient``/``YAMClient``); no
code of theirs is used here.

Transport
  ``POST /act``: body is json_numpy text sent with ``Content-Type: application/json`` (``requests``;
  no authentication). ``GET /act``: health, ``{"status": "ok", "repo_id", "norm_tag", "device",
  "dtype", "num_cameras", "state_dim"[, "action_horizon"]}``. ``GET /healthz``: ``{"status": "ok"}``.
  Ports: DROID 8000, YAM 8202.
json_numpy
  An ndarray (or numpy scalar) becomes ``{"__numpy__": base64 of its C-order bytes, "dtype": numpy
  descr such as "|u1" or "<f4", "shape": [...]}`` (a scalar has shape ``[]``); everything else is
  plain JSON. The servers decode with ``json_numpy.loads`` whatever the Content-Type.
DROID request (``DroidClient``; the DROID server reads exactly these)
  ``external_cam``, ``wrist_cam``: (H, W, 3) uint8 RGB; ``state``: (8,) float32 ``[q1..q7, gripper]``;
  ``instruction``: str; optional ``num_steps`` (int, default 10), ``timestamp`` (float),
  ``enable_cuda_graph`` (bool, ignored). The norm tag (``franka_droid``) is fixed server-side.
  No official DROID client sends JPEG.
YAM request, raw wire (``MolmoActHTTP(jpeg_wire=False)``, ``YAMClient``)
  ``top_cam``, ``left_cam``, ``right_cam``: (H, W, 3) uint8 RGB (model order top, left, right; the
  robot's "front" camera is ``top``); ``state``: (14,) float32 ``[left 7, right 7]``;
  ``instruction``; ``timestamp``; ``normalization_tag``: ``"yam_dual_molmoact2"`` (MolmoActHTTP only);
  optional ``num_steps``, ``enable_cuda_graph``.
YAM request, JPEG wire (``MolmoActHTTP`` default, ``jpeg_wire=True``)
  No ``*_cam`` arrays; instead ``images_jpeg``: ``{"left": s, "top": s, "right": s}``, keyed by the
  BARE camera names, each ``s`` the base64 (standard alphabet, padded) ASCII text of a JPEG that
  PIL wrote at quality 85 from the RGB array; ``timestamp``, ``instruction``, ``state`` (still a
  json_numpy float32 array) and ``normalization_tag`` as above.
Response
  200 with json_numpy ``{"actions": (N, D) float32, "dt_ms": float[, "action_horizon": int]}``;
  failures 400 (undecodable body, missing field, bad shape) or 500 (inference), body
  ``{"error": message}``. MolmoActHTTP reads ``json_numpy.loads(text)["actions"]``; the sim_eval
  clients ``json_numpy.patch()`` then ``response.json()["actions"]``.
SO-100/101
  The repository has no SO-100 server or client (its README links a third-party implementation);
  our server serves one with ``--embodiment so101`` (cameras ``front``, ``wrist``).

Real-time chunking (ours, not in the official protocol)
  ``prev_chunk_left_over``, ``inference_delay``, ``execution_horizon``, ``max_guidance_weight``,
  ``prefix_attention_schedule`` (LeRobot's names) are optional request fields; our health check
  says ``"rtc": true`` when the backend takes them. No official client sends them, and a request
  without them is served as before.

How we map them (``camera_images``): every top-level ``<name>_cam`` key and every ``images_jpeg``
key (``<name>`` or ``<name>_cam``) names a camera by its bare name; the bare names must be exactly the
server's camera names (the embodiment's ``camera_order``), which fixes the model order. A request
whose cameras differ is refused with a message naming both sides.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import codec

#: Model camera order of the official servers, by embodiment (bare names).
OFFICIAL_CAMERAS = {"droid": ["external", "wrist"], "yam": ["top", "left", "right"]}
#: Quality of the official YAM client's JPEG wire.
OFFICIAL_JPEG_QUALITY = 85
CAM_SUFFIX = "_cam"


def bare_name(key: str) -> str:
    """``top_cam`` -> ``top``; a bare name stays as it is."""
    return key[: -len(CAM_SUFFIX)] if key.endswith(CAM_SUFFIX) and len(key) > len(CAM_SUFFIX) else key


def wire_key(name: str) -> str:
    """The raw-wire key of a camera: ``top`` -> ``top_cam``."""
    return name if name.endswith(CAM_SUFFIX) else name + CAM_SUFFIX


def _sent_cameras(payload: dict) -> dict[str, tuple[str, str, Any]]:
    """bare name -> (key as sent, "jpeg" | "array", value)."""
    jpegs = payload.get("images_jpeg")
    if jpegs is not None and not isinstance(jpegs, dict):
        raise codec.CodecError("'images_jpeg' must be an object of camera name -> base64 JPEG text")
    sent: dict[str, tuple[str, str, Any]] = {}

    def add(name: str, shown: str, kind: str, value: Any) -> None:
        if name in sent:
            raise codec.CodecError(f"camera '{name}' is sent twice ({sent[name][0]} and {shown})")
        sent[name] = (shown, kind, value)

    for key, value in (jpegs or {}).items():
        add(bare_name(str(key)), f"images_jpeg['{key}']", "jpeg", value)
    for key, value in payload.items():
        if isinstance(key, str) and key.endswith(CAM_SUFFIX) and key != CAM_SUFFIX:
            add(bare_name(key), key, "array", value)
    return sent


def _as_image(shown: str, kind: str, value: Any) -> np.ndarray:
    if kind == "jpeg":
        if not isinstance(value, str):
            raise codec.CodecError(f"{shown} must be base64 JPEG text, got {type(value).__name__}")
        try:
            return codec.jpeg_decode(value)
        except codec.CodecError as exc:
            raise codec.CodecError(f"{shown}: {exc}") from None
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise codec.CodecError(f"{shown} must be an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        # plain-JSON nested lists arrive as int64; anything else (floats, out-of-range) is refused
        if arr.dtype.kind not in "iu" or arr.size and (arr.min() < 0 or arr.max() > 255):
            raise codec.CodecError(f"{shown} must hold uint8 pixels, got {arr.dtype}")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def camera_images(payload: dict, cameras: list[str]) -> list[np.ndarray]:
    """The request's images in ``cameras`` order (bare names), from any official layout."""
    sent = _sent_cameras(payload)
    missing = [c for c in cameras if c not in sent]
    extra = [n for n in sent if n not in cameras]
    if missing or extra:
        theirs = ", ".join(shown for shown, _, _ in sent.values()) or "no cameras"
        ours = ", ".join(cameras)
        parts = []
        if missing:
            parts.append("request lacks camera " + ", ".join(f"'{c}' ({wire_key(c)} or images_jpeg['{c}'])" for c in missing))
        if extra:
            parts.append("request has camera(s) this server does not take: " + ", ".join(sent[n][0] for n in extra))
        raise codec.CodecError(f"camera mismatch: {'; '.join(parts)}. The request sends {theirs}; this server's "
                               f"embodiment takes {ours} (keys {', '.join(wire_key(c) for c in cameras)}, or images_jpeg "
                               f"keyed {', '.join(cameras)})")
    return [_as_image(*sent[c]) for c in cameras]
