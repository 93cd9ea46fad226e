"""``remote`` backend: an HTTP client of the ``/act`` protocol (allenai/molmoact2 servers, or ours).

Standard library only (http.client, keep-alive), so a drivers-only robot PC can drive a GPU box.
Wire layouts (option ``encoding``; the official ones are those of allenai's clients, see
``server/official.py``):

* ``binary`` (default): our server's encoding (``application/x-molmoact2-binary``), one
  ``<camera>_cam`` array per camera. Only ``molmoact2-act-server`` reads it.
* ``json``: the official raw layout, json_numpy with one ``<camera>_cam`` (H, W, 3) uint8 array per
  camera, ``state`` (float32 array), ``instruction``, ``timestamp``, ``normalization_tag``: what the
  DROID and YAM servers of allenai/molmoact2 read.
* ``jpeg``: the official YAM client's JPEG wire: json_numpy with ``images_jpeg`` keyed by the bare
  camera names (``top``/``left``/``right``), base64 JPEG at quality 85, and the same other keys.

Camera keys: ``<camera>_cam`` per model camera; ``protocol`` droid/yam forces the official names
(DROID ``external_cam``/``wrist_cam``, YAM ``top_cam``/``left_cam``/``right_cam``). ``seed``,
``num_steps`` and ``reset`` are sent only when set (the official servers ignore the first and last);
so are the real-time chunking fields (``prev_chunk_left_over``, ``inference_delay``,
``execution_horizon``, ``max_guidance_weight``, ``prefix_attention_schedule``), which only our server
reads (its health check says ``"rtc": true``).
Reply: ``actions`` (N, D) float32 and ``dt_ms``.

A server that is down or slow raises ``BackendUnavailable`` (connection refused, timeout, 5xx): the
policy runtime puts its status in error and retries with backoff; nothing blocks longer than
``timeout_s``.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ...server import codec
from ...server.official import OFFICIAL_JPEG_QUALITY, bare_name
from .base import (BackendError, BackendInfo, BackendUnavailable, PolicyBackend, PolicyRequest, PolicyResult, RtcInputs,
                   TagInfo)

def rtc_fields(rtc: RtcInputs) -> dict[str, Any]:
    """The /act request fields of real-time chunking (LeRobot's names); all optional on the server."""
    return {"prev_chunk_left_over": np.ascontiguousarray(rtc.prev_chunk_left_over, dtype=np.float32),
            "inference_delay": int(rtc.inference_delay), "execution_horizon": int(rtc.execution_horizon),
            "max_guidance_weight": float(rtc.max_guidance_weight),
            "prefix_attention_schedule": str(rtc.prefix_attention_schedule)}


PROTOCOL_KEYS = {"droid": ["external_cam", "wrist_cam"], "yam": ["top_cam", "left_cam", "right_cam"]}


class RemoteBackend(PolicyBackend):
    kind = "remote"

    def __init__(self, url: str = "http://127.0.0.1:8000", protocol: str = "auto", encoding: str = "binary",
                 timeout_s: float = 2.0, token: str | None = None, jpeg_quality: int = OFFICIAL_JPEG_QUALITY,
                 **unknown: Any) -> None:
        if unknown:
            raise BackendError(f"remote backend: unknown options {', '.join(sorted(unknown))}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"remote url '{url}' must be http(s)://host[:port]")
        if protocol not in ("auto", "generic", *PROTOCOL_KEYS):
            raise BackendError(f"remote protocol '{protocol}' must be auto, generic, droid or yam")
        if encoding not in ("json", "jpeg", "binary"):
            raise BackendError(f"remote encoding '{encoding}' must be binary (ours), json (official json_numpy) or "
                               f"jpeg (official YAM JPEG wire)")
        if not 1 <= int(jpeg_quality) <= 100:
            raise BackendError(f"remote jpeg_quality {jpeg_quality} must be 1..100")
        self.url = url.rstrip("/")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        base = parts.path.rstrip("/")
        # like the official clients, take the URL with or without its trailing /act
        self.path = base if base.endswith("/act") else base + "/act"
        self.protocol, self.encoding = protocol, encoding
        self.timeout_s = float(timeout_s)
        self.token = token
        self.jpeg_quality = int(jpeg_quality)
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._health: dict | None = None
        self._reset_pending = False

    # ------------------------------------------------------------------ HTTP
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, method: str, body: bytes | None = None, content_type: str = codec.JSON) -> tuple[int, str, bytes]:
        headers = {"Accept": content_type}
        if body is not None:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (0, 1):  # one silent retry on a stale keep-alive connection
            try:
                conn = self._connection()
                conn.request(method, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheader("content-type", codec.JSON), data
            except (socket.timeout, TimeoutError) as exc:
                self._drop()
                raise BackendUnavailable(f"/act server {self.url} did not answer within {self.timeout_s:g} s") from exc
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._drop()
                if attempt == 1 or isinstance(exc, ConnectionRefusedError):
                    raise BackendUnavailable(f"/act server {self.url} unreachable: {exc}") from exc
        raise BackendUnavailable(f"/act server {self.url} unreachable")

    # ------------------------------------------------------------------ interface
    def health(self) -> dict:
        with self._lock:
            status, ctype, data = self._request("GET")
        if status != 200:
            raise (BackendUnavailable if status >= 500 else BackendError)(f"/act health check: HTTP {status}: {data[:200]!r}")
        try:
            return codec.decode(data, ctype)
        except codec.CodecError:
            return {}

    def info(self) -> BackendInfo:
        try:
            self._health = self.health()
        except BackendUnavailable:
            self._health = None  # may come up later; the runtime retries
        h = self._health or {}
        tags = {}
        for name, t in (h.get("tags") or {}).items():
            tags[name] = TagInfo(name, t.get("state_dim"), t.get("action_dim"), t.get("action_horizon"), None,
                                 str(t.get("control_mode") or ""))
        if not tags and h.get("norm_tag") and h.get("state_dim") is not None:
            # an official server's health: one norm tag with its state size (and, on newer YAM, horizon)
            tags[str(h["norm_tag"])] = TagInfo(str(h["norm_tag"]), int(h["state_dim"]), None,
                                               h.get("action_horizon"), None)
        cams = h.get("cameras")
        if not isinstance(cams, list) and self.protocol in PROTOCOL_KEYS:
            cams = PROTOCOL_KEYS[self.protocol]
        return BackendInfo(kind=self.kind, model_id=str(h.get("model") or h.get("repo_id") or self.url), tags=tags,
                           action_mode=str(h.get("mode") or "continuous"),
                           think=h.get("mode") == "think", rtc=bool(h.get("rtc")),
                           camera_keys=tuple(cams) if isinstance(cams, list) else None,
                           extra={"url": self.url, "reachable": self._health is not None})

    def camera_keys(self, camera_names: list[str]) -> list[str]:
        if self.protocol in PROTOCOL_KEYS:
            keys = PROTOCOL_KEYS[self.protocol]
            if len(keys) != len(camera_names):
                raise BackendError(f"protocol '{self.protocol}' takes cameras {', '.join(keys)}, the request has "
                                   f"{', '.join(camera_names)}")
            return keys
        return [f"{c}_cam" for c in camera_names]

    def build_body(self, request: PolicyRequest) -> tuple[bytes, str]:
        names = request.camera_names or [f"image{i}" for i in range(len(request.images))]
        keys = self.camera_keys(names)
        payload: dict[str, Any] = {"state": np.asarray(request.state, dtype=np.float32),
                                   "instruction": request.instruction, "normalization_tag": request.norm_tag,
                                   "timestamp": time.time()}
        if request.seed is not None:
            payload["seed"] = int(request.seed)
        if self._reset_pending:
            payload["reset"] = True  # our server drops its Think depth cache; others ignore the key
            self._reset_pending = False
        if request.num_steps:
            payload["num_steps"] = int(request.num_steps)
        if request.rtc is not None:  # optional fields: only our server reads them (health "rtc": true)
            payload.update(rtc_fields(request.rtc))
        if self.encoding == "jpeg":
            # the official YAM client keys its JPEGs by the bare camera names (top, left, right)
            payload["images_jpeg"] = {bare_name(k): codec.jpeg_encode(im, self.jpeg_quality)
                                      for k, im in zip(keys, request.images)}
        else:
            payload.update({k: np.ascontiguousarray(im) for k, im in zip(keys, request.images)})
        ctype = codec.BINARY if self.encoding == "binary" else codec.JSON
        return codec.encode(payload, ctype), ctype

    def predict(self, request: PolicyRequest) -> PolicyResult:
        request.validate()
        t0 = time.perf_counter()
        body, ctype = self.build_body(request)
        t1 = time.perf_counter()
        with self._lock:
            status, rtype, data = self._request("POST", body, ctype)
        t2 = time.perf_counter()
        if status >= 500:
            raise BackendUnavailable(f"/act server {self.url}: HTTP {status}: {data[:300]!r}")
        if status != 200:
            hint = ""
            if self.encoding == "binary" and status in (400, 415, 422) and b"json" in data[:300].lower():
                hint = " (an allenai/molmoact2 server reads only json_numpy: use encoding json or jpeg)"
            raise BackendError(f"/act server {self.url} refused the request: HTTP {status}: {data[:300]!r}{hint}")
        try:
            reply = codec.decode(data, rtype)
            actions = np.asarray(reply["actions"], dtype=np.float32)
        except (codec.CodecError, KeyError, ValueError, TypeError) as exc:
            raise BackendError(f"/act server {self.url} sent an unreadable reply: {exc}") from None
        if actions.ndim == 3 and actions.shape[0] == 1:
            actions = actions[0]
        if actions.ndim != 2:
            raise BackendError(f"/act server {self.url} sent actions of shape {actions.shape}, expected (N, D)")
        result = PolicyResult(actions=actions.copy())
        if "depth_codes" in reply:
            codes = np.asarray(reply["depth_codes"], dtype=np.uint8).reshape(-1)
            result.depth_codes = codes
            result.depth_refreshed = np.asarray(reply.get("depth_refreshed", np.ones_like(codes)), dtype=bool).reshape(-1)
        t3 = time.perf_counter()
        result.timings = {"encode": t1 - t0, "round_trip": t2 - t1, "decode": t3 - t2,
                          "server_ms": float(reply.get("dt_ms", 0.0)) / 1000.0,
                          "server_model_ms": float(reply.get("model_ms", 0.0)) / 1000.0}
        return result

    def reset(self) -> None:
        self._reset_pending = True

    def close(self) -> None:
        self._drop()
