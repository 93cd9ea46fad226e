"""``molmoact2-act-server``: the ``/act`` protocol over any local backend (FastAPI + uvicorn).

A GPU box runs the model, the robot PC runs the ROS graph with the ``remote`` backend (or any client of
the allenai/molmoact2 servers). ``POST /act`` takes the official request (json_numpy body; cameras as
``<name>_cam`` arrays, e.g. DROID ``external_cam``/``wrist_cam`` or YAM ``top_cam``/``left_cam``/
``right_cam``, or ``images_jpeg``; ``state``; ``instruction``; optional ``normalization_tag``,
``num_steps``, ``seed``) and answers ``{"actions": (N, D) float32, "dt_ms": float}``; the binary
encoding is used when the request's Content-Type is ``application/x-molmoact2-binary`` (the reply
follows the Accept header, else the request's type). ``GET /act`` is the health check.

Binds 127.0.0.1 by default and refuses to bind elsewhere without a token; with a token every
request must carry ``Authorization: Bearer <token>``.
"""


import argparse
import hmac
import ipaddress
import sys
import threading
import time
from typing import Any

import numpy as np

from ..core.backends.base import BACKEND_KINDS, BackendError, BackendUnavailable, PolicyBackend, PolicyRequest
from . import codec

PROTOCOL_CAMERAS = {"droid": ["external", "wrist"], "yam": ["top", "left", "right"]}


class ServerConfigError(ValueError):
    pass


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise ServerConfigError(
            f"refusing to bind {host}: beyond localhost the /act server needs a token (--token or MOLMOACT2_ACT_TOKEN)")


def create_app(backend: PolicyBackend, cameras: list[str], norm_tag: str, token: str | None = None):
    """A FastAPI app serving ``backend``; ``cameras`` = model camera order (request keys ``<camera>_cam``)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    app = FastAPI(title="MolmoAct2 /act server")
    lock = threading.Lock()
    info = backend.info()

    def authorised(request: Request) -> bool:
        if not token:
            return True
        got = request.headers.get("authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/act")
    def health(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        tags = {k: {"state_dim": v.state_dim, "action_dim": v.action_dim, "action_horizon": v.action_horizon,
                    "control_mode": v.control_mode} for k, v in info.tags.items()}
        return {"status": "ok", "model": info.model_id, "backend": info.kind, "mode": info.mode,
                "cameras": [f"{c}_cam" for c in cameras], "norm_tag": norm_tag, "tags": tags}

    @app.post("/act")
    async def act(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        t0 = time.perf_counter()
        body = await request.body()
        ctype = request.headers.get("content-type", codec.JSON)
        try:
            payload = codec.decode(body, ctype)
            images = []
            jpegs = payload.get("images_jpeg")
            for cam in cameras:
                key = f"{cam}_cam"
                if isinstance(jpegs, dict) and key in jpegs:
                    images.append(codec.jpeg_decode(jpegs[key]))
                elif key in payload:
                    images.append(np.ascontiguousarray(np.asarray(payload[key], dtype=np.uint8)))
                else:
                    raise codec.CodecError(f"request lacks camera '{key}' (this server takes {', '.join(c + '_cam' for c in cameras)})")
            if "state" not in payload:
                raise codec.CodecError("request lacks 'state'")
            req = PolicyRequest(images=images, state=np.asarray(payload["state"], dtype=np.float32).reshape(-1),
                                instruction=str(payload.get("instruction", "")),
                                norm_tag=str(payload.get("normalization_tag") or norm_tag), camera_names=list(cameras),
                                seed=payload.get("seed"), num_steps=payload.get("num_steps"))
        except (codec.CodecError, ValueError, TypeError) as exc:
            return error(400, str(exc))
        try:
            with lock:
                if payload.get("reset"):
                    backend.reset()
                result = backend.predict(req)
        except BackendUnavailable as exc:
            return error(503, str(exc))
        except BackendError as exc:
            return error(422, str(exc))
        reply: dict[str, Any] = {"actions": np.ascontiguousarray(result.actions, dtype=np.float32),
                                 "dt_ms": (time.perf_counter() - t0) * 1000.0,
                                 "model_ms": sum(result.timings.values()) * 1000.0}
        if result.depth_codes is not None:
            reply["depth_codes"] = result.depth_codes
            reply["depth_refreshed"] = result.depth_refreshed.astype(np.uint8)
        accept = request.headers.get("accept", "")
        out_type = codec.BINARY if (codec.BINARY in accept or (ctype.startswith(codec.BINARY) and codec.JSON not in accept)) else codec.JSON
        return Response(codec.encode(reply, out_type), media_type=out_type)

    return app


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(prog="molmoact2-act-server", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="hf", choices=[k for k in BACKEND_KINDS if k != "remote"])
    p.add_argument("--checkpoint", required=True, help="local checkpoint directory")
    p.add_argument("--norm-tag", required=True, help="default norm tag (a request's normalization_tag overrides it)")
    p.add_argument("--protocol", default="", choices=["", *PROTOCOL_CAMERAS], help="camera keys of an official server")
    p.add_argument("--cameras", default="", help="model camera order, comma separated (keys are <camera>_cam)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=os.environ.get("MOLMOACT2_ACT_TOKEN", ""))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--action-mode", default="continuous", choices=["continuous", "discrete"])
    p.add_argument("--think", action="store_true")
    p.add_argument("--cuda-graph", action="store_true")
    p.add_argument("--num-threads", type=int, default=0)
    a = p.parse_args(argv)
    try:
        check_bind(a.host, a.token)
        cameras = PROTOCOL_CAMERAS.get(a.protocol) or [c for c in a.cameras.split(",") if c]
        if not cameras:
            raise ServerConfigError("give --protocol droid|yam or --cameras name1,name2,...")
        from ..core.backends import make_backend

        opts = dict(checkpoint=a.checkpoint, device=a.device, dtype=a.dtype, action_mode=a.action_mode,
                    cuda_graph=a.cuda_graph, num_threads=a.num_threads or None)
        if a.think:
            opts["think"] = True
        backend = make_backend(a.backend, **opts)
    except (ServerConfigError, BackendError) as exc:
        print(f"molmoact2-act-server: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(create_app(backend, cameras, a.norm_tag, a.token or None), host=a.host, port=a.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
