"""``molmoact2-act-server``: the ``/act`` protocol over any local backend (FastAPI + uvicorn).

A GPU box runs the model, the robot PC runs the ROS graph with the ``remote`` backend (or any client of
the allenai/molmoact2 servers). ``POST /act`` takes every layout the official clients send (see
``official.py`` for the facts): json_numpy bodies with one ``<camera>_cam`` array per camera (DROID
``external_cam``/``wrist_cam``, YAM ``top_cam``/``left_cam``/``right_cam``) or the YAM client's JPEG
wire, ``images_jpeg`` keyed by the bare camera names (``top``/``left``/``right``; ``<camera>_cam``
keys are taken too); ``state``; ``instruction``; optional ``normalization_tag``, ``num_steps``,
``seed``, ``reset``, and real-time chunking's ``prev_chunk_left_over`` ((M, D) float32, model units,
row 0 due at this observation) with ``inference_delay`` and, optionally, ``execution_horizon``,
``max_guidance_weight``, ``prefix_attention_schedule`` (LeRobot's names). A request without them is
served exactly as before. Cameras are matched to the embodiment's camera names by name; a request with
other cameras is refused (400) naming both sides. The answer is the official one,
``{"actions": (N, D) float32, "dt_ms": float, "action_horizon": int}`` (json_numpy), or our binary
encoding when the request's Content-Type is ``application/x-molmoact2-binary`` (the reply follows
the Accept header, else the request's type). ``GET /act`` is the health check, ``GET /healthz`` the
liveness probe.

Binds 127.0.0.1 by default and refuses to bind elsewhere without a token; with a token every
request must carry ``Authorization: Bearer <token>`` (the official clients send none: run them
against a loopback server or through a tunnel).
"""


import argparse
import hmac
import ipaddress
import sys
import threading
import time
from typing import Any

import numpy as np

from ..core.backends.base import BACKEND_KINDS, BackendError, BackendUnavailable, PolicyBackend, PolicyRequest, RtcInputs
from . import codec, official

PROTOCOL_CAMERAS = official.OFFICIAL_CAMERAS


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


def server_cameras(embodiment: str, protocol: str, cameras: str, norm_tag: str) -> tuple[list[str], str]:
    """The camera names (model order) and default norm tag from exactly one of --embodiment,
    --protocol and --cameras."""
    given = [flag for flag, v in (("--embodiment", embodiment), ("--protocol", protocol), ("--cameras", cameras)) if v]
    if len(given) != 1:
        raise ServerConfigError("give exactly one of --embodiment NAME, --protocol droid|yam or --cameras name1,name2,..."
                                + (f" (got {', '.join(given)})" if given else ""))
    if embodiment:
        from molmoact2_common.embodiment import EmbodimentError, load_embodiment

        try:
            emb = load_embodiment(embodiment)
        except (EmbodimentError, OSError) as exc:
            raise ServerConfigError(str(exc)) from None
        names, norm_tag = list(emb.model.camera_order), norm_tag or emb.model.norm_tag
    else:
        names = list(PROTOCOL_CAMERAS.get(protocol) or [official.bare_name(c.strip()) for c in cameras.split(",") if c.strip()])
    if not norm_tag:
        raise ServerConfigError("give --norm-tag (or --embodiment, whose norm tag is the default)")
    return names, norm_tag


def create_app(backend: PolicyBackend, cameras: list[str], norm_tag: str, token: str | None = None):
    """A FastAPI app serving ``backend``; ``cameras`` = the embodiment's camera names in model order
    (request keys ``<camera>_cam``, or ``images_jpeg`` keyed ``<camera>``)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    cameras = [official.bare_name(c) for c in cameras]
    app = FastAPI(title="MolmoAct2 /act server")
    lock = threading.Lock()
    info = backend.info()
    tag = info.tags.get(norm_tag)
    if tag is not None and tag.cameras is not None and len(tag.cameras) != len(cameras):
        raise ServerConfigError(f"norm tag '{norm_tag}' of {info.model_id} takes {len(tag.cameras)} cameras "
                                f"({', '.join(tag.cameras)}), this server was given {', '.join(cameras)}")

    def authorised(request: Request) -> bool:
        if not token:
            return True
        got = request.headers.get("authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())

    def rtc_inputs(payload: dict) -> RtcInputs | None:
        if payload.get("prev_chunk_left_over") is None:
            return None
        if not info.rtc:
            raise codec.CodecError(f"this server's backend ({info.kind}, {info.mode}) does not take real-time "
                                   "chunking inputs (prev_chunk_left_over)")
        rtc = RtcInputs(prev_chunk_left_over=np.asarray(payload["prev_chunk_left_over"], dtype=np.float32),
                        inference_delay=int(payload.get("inference_delay", 0)),
                        execution_horizon=int(payload.get("execution_horizon", 10)),
                        max_guidance_weight=float(payload.get("max_guidance_weight", 10.0)),
                        prefix_attention_schedule=str(payload.get("prefix_attention_schedule", "LINEAR")))
        try:
            rtc.validate()
        except BackendError as exc:
            raise codec.CodecError(str(exc)) from None
        return rtc

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/act")
    def health(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        tags = {k: {"state_dim": v.state_dim, "action_dim": v.action_dim, "action_horizon": v.action_horizon,
                    "control_mode": v.control_mode} for k, v in info.tags.items()}
        default = tags.get(norm_tag, {})
        # the official servers' fields first (repo_id, norm_tag, num_cameras, state_dim, action_horizon)
        return {"status": "ok", "repo_id": info.model_id, "norm_tag": norm_tag, "num_cameras": len(cameras),
                "state_dim": default.get("state_dim"), "action_horizon": default.get("action_horizon"),
                "model": info.model_id, "backend": info.kind, "mode": info.mode, "rtc": bool(info.rtc),
                "cameras": [official.wire_key(c) for c in cameras], "tags": tags}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/act")
    async def act(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        t0 = time.perf_counter()
        body = await request.body()
        ctype = request.headers.get("content-type", codec.JSON)
        try:
            payload = codec.decode(body, ctype)
            images = official.camera_images(payload, cameras)
            if "state" not in payload:
                raise codec.CodecError("request lacks 'state'")
            steps = payload.get("num_steps")
            seed = payload.get("seed")
            req = PolicyRequest(images=images, state=np.asarray(payload["state"], dtype=np.float32).reshape(-1),
                                instruction=str(payload.get("instruction", "")),
                                norm_tag=str(payload.get("normalization_tag") or norm_tag), camera_names=list(cameras),
                                seed=None if seed is None else int(seed),
                                num_steps=None if steps is None else int(steps), rtc=rtc_inputs(payload))
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
        actions = np.ascontiguousarray(result.actions, dtype=np.float32)
        reply: dict[str, Any] = {"actions": actions, "dt_ms": (time.perf_counter() - t0) * 1000.0,
                                 "action_horizon": int(actions.shape[0]),
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
    p.add_argument("--embodiment", default="", help="embodiment config (name or path): its camera_order and norm tag")
    p.add_argument("--norm-tag", default="", help="default norm tag (a request's normalization_tag overrides it)")
    p.add_argument("--protocol", default="", choices=["", *PROTOCOL_CAMERAS], help="cameras of an official server")
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
        cameras, norm_tag = server_cameras(a.embodiment, a.protocol, a.cameras, a.norm_tag)
        from ..core.backends import make_backend

        opts = dict(checkpoint=a.checkpoint, device=a.device, dtype=a.dtype, action_mode=a.action_mode,
                    cuda_graph=a.cuda_graph, num_threads=a.num_threads or None)
        if a.think:
            opts["think"] = True
        backend = make_backend(a.backend, **opts)
        app = create_app(backend, cameras, norm_tag, a.token or None)
    except (ServerConfigError, BackendError) as exc:
        print(f"molmoact2-act-server: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
