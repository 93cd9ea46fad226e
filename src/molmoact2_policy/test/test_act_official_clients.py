"""The /act server takes every layout the official allenai/molmoact2 clients send; the remote backend
sends the official layouts.

Each ``_official_*`` helper builds its body the way the official client does (the facts are in
``molmoact2_policy/server/official.py``): the same keys, the same libraries (json_numpy for the body,
PIL for the YAM client's JPEGs, requests for the POST, Content-Type application/json, no token) and
parses the answer as that client does. The server runs the real hf backend on the tiny checkpoint;
a recorder in front of it keeps each request so that a test can check which pixels reached which
camera slot.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from molmoact2_policy.core.backends.base import PolicyBackend, PolicyRequest

json_numpy = pytest.importorskip("json_numpy")
requests = pytest.importorskip("requests")
Image = pytest.importorskip("PIL.Image")

YAM_TAG, DROID_TAG = "yam_dual_molmoact2", "franka_droid"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Recorder(PolicyBackend):
    """The real backend, with each request it was given kept for the test to look at."""

    def __init__(self, inner: PolicyBackend) -> None:
        self.inner, self.kind, self.requests = inner, inner.kind, []

    def info(self):
        return self.inner.info()

    def predict(self, request: PolicyRequest):
        self.requests.append(request)
        return self.inner.predict(request)

    def reset(self):
        self.inner.reset()


class _Server:
    def __init__(self, backend, cameras, norm_tag):
        import uvicorn

        from molmoact2_policy.server.app import create_app

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(backend, cameras, norm_tag), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def servers(tiny_checkpoint_dir):
    """Our server as an official YAM server and as an official DROID server (cameras by embodiment)."""
    from molmoact2_policy.core.backends import make_backend

    local = make_backend("hf", checkpoint=str(tiny_checkpoint_dir))
    yam, droid = _Recorder(local), _Recorder(local)
    # the embodiments' camera_order (config/embodiments/yam_bimanual.yaml, franka_droid.yaml)
    s_yam, s_droid = _Server(yam, ["top", "left", "right"], YAM_TAG), _Server(droid, ["external", "wrist"], DROID_TAG)
    yield {"yam": (s_yam, yam), "droid": (s_droid, droid), "local": local}
    s_yam.stop()
    s_droid.stop()


def _picture(h: int, w: int, base: tuple[int, int, int]) -> np.ndarray:
    """A smooth, camera-specific RGB picture (JPEG keeps it close, and each camera is told apart)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([base[0] + x // 4, base[1] + y // 3, np.full_like(x, base[2])], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _yam_frames():
    # the YAM robot's observation: left, front (the model's "top") and right camera RGB
    return {"left_camera_rgb": _picture(72, 128, (10, 200, 40)), "front_camera_rgb": _picture(72, 128, (200, 20, 30)),
            "right_camera_rgb": _picture(72, 128, (60, 60, 220))}


def _pil_jpeg_b64(arr: np.ndarray) -> str:
    """As MolmoActHTTP's JPEG wire writes one camera: PIL, quality 85, base64 ASCII."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pil_decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _post_like_molmoact_http(url: str, payload: dict):
    """MolmoActHTTP.send_request: json_numpy.dumps, requests POST <url>/act as application/json,
    json_numpy.loads(response.text)."""
    with requests.Session() as http:
        response = http.post(url + "/act", headers={"Content-Type": "application/json"},
                             data=json_numpy.dumps(payload), timeout=60)
    return response, (json_numpy.loads(response.text) if response.status_code == 200 else None)


def _post_like_sim_eval(url: str, payload: dict):
    """sim_eval _MolmoActHTTPClient._query_server: json_numpy.dumps, POST, then response.json() with
    json_numpy's decoding (the client patches json globally; the same hook is passed here instead)."""
    with requests.Session() as http:
        response = http.post(url + "/act", headers={"Content-Type": "application/json"},
                             data=json_numpy.dumps(payload), timeout=60)
    return response, (response.json(object_hook=json_numpy.object_hook) if response.status_code == 200 else None)


def _official_yam_jpeg_payload(frames, state, instruction):
    """MolmoActHTTP with jpeg_wire=True (its default)."""
    return {"images_jpeg": {"left": _pil_jpeg_b64(frames["left_camera_rgb"]), "top": _pil_jpeg_b64(frames["front_camera_rgb"]),
                            "right": _pil_jpeg_b64(frames["right_camera_rgb"])},
            "timestamp": time.time(), "instruction": instruction, "state": state, "normalization_tag": YAM_TAG}


def _official_yam_raw_payload(frames, state, instruction):
    """MolmoActHTTP with jpeg_wire=False."""
    return {"left_cam": frames["left_camera_rgb"], "top_cam": frames["front_camera_rgb"],
            "right_cam": frames["right_camera_rgb"], "timestamp": time.time(), "instruction": instruction,
            "state": state, "normalization_tag": YAM_TAG}


def _yam_state():
    # require_bimanual_state: a (14,) float32 array, [left(7), right(7)]
    return np.asarray(np.linspace(-0.2, 0.4, 14), dtype=np.float32).reshape(-1)


def _check_actions(actions, shape):
    assert isinstance(actions, np.ndarray) and actions.dtype == np.float32 and actions.shape == shape
    assert np.all(np.isfinite(actions))


@pytest.mark.model
def test_server_accepts_official_yam_jpeg_payload_keyed_by_bare_camera_names(servers):
    server, recorder = servers["yam"]
    frames, state = _yam_frames(), _yam_state()
    payload = _official_yam_jpeg_payload(frames, state, "fold the towel")
    response, reply = _post_like_molmoact_http(server.url, payload)
    assert response.status_code == 200, response.text
    _check_actions(reply["actions"], (30, 14))
    assert reply["dt_ms"] > 0
    got = recorder.requests[-1]
    # model order top, left, right; each slot holds exactly the JPEG that camera sent, decoded
    for slot, (wire, source) in enumerate([("top", "front_camera_rgb"), ("left", "left_camera_rgb"), ("right", "right_camera_rgb")]):
        np.testing.assert_array_equal(got.images[slot], _pil_decode(payload["images_jpeg"][wire]))
        assert np.abs(got.images[slot].astype(int) - frames[source]).mean() < 3
    np.testing.assert_array_equal(got.state, state)
    assert (got.instruction, got.norm_tag, got.camera_names) == ("fold the towel", YAM_TAG, ["top", "left", "right"])


@pytest.mark.model
def test_server_accepts_official_yam_json_numpy_payload_and_answers_what_the_client_parses(servers):
    server, recorder = servers["yam"]
    frames, state = _yam_frames(), _yam_state()
    response, reply = _post_like_molmoact_http(server.url, _official_yam_raw_payload(frames, state, "stack the cups"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    _check_actions(reply["actions"], (30, 14))
    assert reply["action_horizon"] == 30
    got = recorder.requests[-1]
    for slot, source in enumerate(["front_camera_rgb", "left_camera_rgb", "right_camera_rgb"]):
        np.testing.assert_array_equal(got.images[slot], frames[source])
    np.testing.assert_array_equal(got.state, state)


@pytest.mark.model
def test_server_accepts_official_sim_eval_yam_client_payload(servers):
    server, recorder = servers["yam"]
    frames, state = _yam_frames(), _yam_state()
    # YAMClient: instruction, state, then the schema's camera keys; no normalization_tag, no timestamp
    payload = {"instruction": "put everything into the box", "state": state, "enable_cuda_graph": False,
               "top_cam": frames["front_camera_rgb"], "left_cam": frames["left_camera_rgb"],
               "right_cam": frames["right_camera_rgb"]}
    response, data = _post_like_sim_eval(server.url, payload)
    assert response.status_code == 200, response.text
    _check_actions(np.asarray(data["actions"]), (30, 14))
    assert recorder.requests[-1].norm_tag == YAM_TAG  # the server's default tag
    np.testing.assert_array_equal(recorder.requests[-1].images[0], frames["front_camera_rgb"])


@pytest.mark.model
def test_server_accepts_official_droid_json_numpy_payload(servers):
    server, recorder = servers["droid"]
    external, wrist = _picture(90, 160, (30, 90, 150)), _picture(90, 160, (220, 180, 10))
    # DroidClient: droid_state_adapter gives (8,) float32 [q1..q7, gripper]
    state = np.concatenate([np.linspace(-0.5, 0.5, 7), [0.3]]).astype(np.float32)
    payload = {"instruction": "put the marker in the cup", "state": state, "external_cam": external, "wrist_cam": wrist}
    response, data = _post_like_sim_eval(server.url, payload)
    assert response.status_code == 200, response.text
    _check_actions(np.asarray(data["actions"]), (15, 8))  # the tiny checkpoint's franka_droid horizon
    got = recorder.requests[-1]
    np.testing.assert_array_equal(got.images[0], external)
    np.testing.assert_array_equal(got.images[1], wrist)
    assert (got.norm_tag, got.camera_names) == (DROID_TAG, ["external", "wrist"])
    np.testing.assert_array_equal(got.state, state)


@pytest.mark.model
def test_server_accepts_images_jpeg_keyed_by_bare_droid_names_and_by_cam_keys(servers):
    """No official DROID client sends JPEG; the server takes the YAM client's convention (bare names)
    and our older <camera>_cam keys for DROID too."""
    server, recorder = servers["droid"]
    external, wrist = _picture(90, 160, (30, 90, 150)), _picture(90, 160, (220, 180, 10))
    state = np.zeros(8, np.float32)
    for keys in (("external", "wrist"), ("external_cam", "wrist_cam")):
        jpegs = {keys[0]: _pil_jpeg_b64(external), keys[1]: _pil_jpeg_b64(wrist)}
        response, _ = _post_like_molmoact_http(server.url, {"images_jpeg": jpegs, "instruction": "x", "state": state})
        assert response.status_code == 200, (keys, response.text)
        np.testing.assert_array_equal(recorder.requests[-1].images[1], _pil_decode(jpegs[keys[1]]))


@pytest.mark.model
def test_server_refuses_droid_cameras_on_a_yam_server_naming_both_sides(servers):
    server, recorder = servers["yam"]
    before = len(recorder.requests)
    payload = {"instruction": "x", "state": _yam_state(), "external_cam": _picture(8, 8, (0, 0, 0)),
               "wrist_cam": _picture(8, 8, (0, 0, 0))}
    response, _ = _post_like_sim_eval(server.url, payload)
    assert response.status_code == 400
    message = response.json()["error"]
    for name in ("external_cam", "wrist_cam", "top", "left", "right"):
        assert name in message, message
    assert len(recorder.requests) == before  # nothing reached the model


@pytest.mark.model
def test_server_refuses_a_camera_sent_both_as_array_and_as_jpeg(servers):
    server, _ = servers["yam"]
    frames = _yam_frames()
    payload = _official_yam_raw_payload(frames, _yam_state(), "x")
    payload["images_jpeg"] = {"top": _pil_jpeg_b64(frames["front_camera_rgb"])}
    response, _ = _post_like_molmoact_http(server.url, payload)
    assert response.status_code == 400 and "'top' is sent twice" in response.json()["error"]


@pytest.mark.model
def test_server_refuses_float_pixels_and_a_non_jpeg_entry_naming_the_camera(servers):
    server, _ = servers["yam"]
    frames = _yam_frames()
    payload = _official_yam_raw_payload(frames, _yam_state(), "x")
    payload["left_cam"] = frames["left_camera_rgb"].astype(np.float32) / 255.0
    response, _ = _post_like_molmoact_http(server.url, payload)
    assert response.status_code == 400 and "left_cam must hold uint8 pixels" in response.json()["error"]
    jp = _official_yam_jpeg_payload(frames, _yam_state(), "x")
    jp["images_jpeg"]["right"] = base64.b64encode(b"not a jpeg").decode()
    response, _ = _post_like_molmoact_http(server.url, jp)
    assert response.status_code == 400 and "images_jpeg['right']" in response.json()["error"]


@pytest.mark.model
def test_server_health_has_the_official_fields(servers):
    server, _ = servers["yam"]
    health = requests.get(server.url + "/act", timeout=10).json()
    assert health["status"] == "ok" and health["norm_tag"] == YAM_TAG
    assert (health["num_cameras"], health["state_dim"], health["action_horizon"]) == (3, 14, 30)
    assert requests.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}


def test_server_takes_camera_names_and_norm_tag_from_the_embodiment():
    from molmoact2_policy.server.app import ServerConfigError, server_cameras

    assert server_cameras("yam_bimanual", "", "", "") == (["top", "left", "right"], YAM_TAG)
    assert server_cameras("franka_droid", "", "", "") == (["external", "wrist"], DROID_TAG)
    assert server_cameras("so101", "", "", "")[0] == ["front", "wrist"]
    assert server_cameras("", "", "top_cam,left_cam", "t") == (["top", "left"], "t")
    with pytest.raises(ServerConfigError, match="exactly one of"):
        server_cameras("yam_bimanual", "yam", "", "")
    with pytest.raises(ServerConfigError, match="--norm-tag"):
        server_cameras("", "droid", "", "")
    with pytest.raises(ServerConfigError, match="not found"):
        server_cameras("no_such_robot", "", "", "")


# ------------------------------------------------------------------ the remote backend's layouts


def _yam_request():
    frames = _yam_frames()
    return frames, PolicyRequest(images=[frames["front_camera_rgb"], frames["left_camera_rgb"], frames["right_camera_rgb"]],
                                 state=_yam_state(), instruction="fold the towel", norm_tag=YAM_TAG,
                                 camera_names=["top", "left", "right"])


OFFICIAL_YAM_KEYS = {"timestamp", "instruction", "state", "normalization_tag"}


def test_remote_backend_defaults_to_the_binary_layout():
    from molmoact2_policy.core.backends import make_backend
    from molmoact2_policy.server import codec

    remote = make_backend("remote", url="http://127.0.0.1:9")
    body, ctype = remote.build_body(_yam_request()[1])
    assert remote.encoding == "binary" and ctype == codec.BINARY and body[:4] == b"MA2B"
    assert set(codec.loads_binary(body)) == OFFICIAL_YAM_KEYS | {"top_cam", "left_cam", "right_cam"}


def test_remote_backend_json_layout_is_the_official_yam_raw_layout():
    from molmoact2_policy.core.backends import make_backend

    frames, req = _yam_request()
    body, ctype = make_backend("remote", url="http://127.0.0.1:9", encoding="json", protocol="yam").build_body(req)
    assert ctype == "application/json"
    sent = json_numpy.loads(body.decode("utf-8"))
    assert set(sent) == set(_official_yam_raw_payload(frames, req.state, req.instruction))
    np.testing.assert_array_equal(sent["top_cam"], frames["front_camera_rgb"])
    assert sent["state"].dtype == np.float32 and sent["state"].shape == (14,)
    assert sent["normalization_tag"] == YAM_TAG


@pytest.mark.model
def test_remote_backend_sends_official_yam_layout_and_server_accepts_it(servers):
    from molmoact2_policy.core.backends import make_backend

    server, recorder = servers["yam"]
    frames, req = _yam_request()
    remote = make_backend("remote", url=server.url, encoding="jpeg", protocol="yam", timeout_s=30)
    body, _ = remote.build_body(req)
    sent = json_numpy.loads(body.decode("utf-8"))
    official = _official_yam_jpeg_payload(frames, req.state, req.instruction)
    assert set(sent) == set(official) and set(sent["images_jpeg"]) == {"top", "left", "right"}
    for wire, source in (("top", "front_camera_rgb"), ("left", "left_camera_rgb"), ("right", "right_camera_rgb")):
        assert np.abs(_pil_decode(sent["images_jpeg"][wire]).astype(int) - frames[source]).mean() < 3
    assert sent["state"].dtype == np.float32 and sent["state"].shape == (14,)
    result = remote.predict(req)
    assert result.actions.shape == (30, 14) and result.actions.dtype == np.float32
    got = recorder.requests[-1]
    for slot, source in enumerate(["front_camera_rgb", "left_camera_rgb", "right_camera_rgb"]):
        assert np.abs(got.images[slot].astype(int) - frames[source]).mean() < 3


class _OfficialYamServerEmulator:
    """Speaks the official YAM server's wire: json_numpy.loads of the body, the five fields it reads
    (a KeyError is a 400 ``missing required field``), a json_numpy ``{"actions", "dt_ms"}`` reply.
    Its "model" echoes the state into every row, so the test sees what arrived."""

    def __init__(self):
        emulator = self
        self.seen: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, obj):
                body = json_numpy.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != "/act":
                    return self._send(404, {"detail": "Not Found"})
                self._send(200, {"status": "ok", "repo_id": "allenai/MolmoAct2-BimanualYAM", "norm_tag": YAM_TAG,
                                 "device": "cuda:0", "dtype": "torch.bfloat16", "num_cameras": 3, "state_dim": 14,
                                 "action_horizon": 30})

            def do_POST(self):
                if self.path != "/act":
                    return self._send(404, {"detail": "Not Found"})
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json_numpy.loads(raw.decode("utf-8"))
                except Exception as exc:  # noqa: BLE001 - as the official server answers any decode failure
                    return self._send(400, {"error": f"failed to decode json_numpy body: {exc}"})
                try:
                    cams = [payload["top_cam"], payload["left_cam"], payload["right_cam"]]
                    instruction, state = str(payload["instruction"]), payload["state"]
                except KeyError as exc:
                    return self._send(400, {"error": f"missing required field: {exc}"})
                emulator.seen.append({"cams": cams, "instruction": instruction, "state": state})
                actions = np.tile(np.asarray(state, np.float32).reshape(1, -1), (30, 1))
                self._send(200, {"actions": actions, "dt_ms": 1.0})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_remote_backend_json_layout_is_read_by_an_official_format_server():
    from molmoact2_policy.core.backends import BackendError, make_backend

    emulator = _OfficialYamServerEmulator()
    try:
        frames, req = _yam_request()
        result = make_backend("remote", url=emulator.url, encoding="json", protocol="yam", timeout_s=10).predict(req)
        np.testing.assert_array_equal(result.actions, np.tile(req.state, (30, 1)))
        for got, source in zip(emulator.seen[-1]["cams"], ["front_camera_rgb", "left_camera_rgb", "right_camera_rgb"]):
            np.testing.assert_array_equal(got, frames[source])
        assert emulator.seen[-1]["instruction"] == "fold the towel"
        # the URL may carry the endpoint, as the official clients allow
        again = make_backend("remote", url=emulator.url + "/act", encoding="json", protocol="yam", timeout_s=10)
        assert again.predict(req).actions.shape == (30, 14)
        # our binary layout is refused there, and the error says which encoding to pick
        with pytest.raises(BackendError, match="use encoding json or jpeg"):
            make_backend("remote", url=emulator.url, protocol="yam", timeout_s=10).predict(req)
    finally:
        emulator.stop()


def test_remote_backend_reads_an_official_health_check_so_the_embodiment_check_can_refuse_a_mismatch():
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_policy.core.backends import make_backend
    from molmoact2_policy.core.policy_io import PolicyIO, PolicyIOError

    emulator = _OfficialYamServerEmulator()
    try:
        info = make_backend("remote", url=emulator.url, encoding="json", protocol="yam").info()
        assert info.model_id == "allenai/MolmoAct2-BimanualYAM"
        assert info.tags[YAM_TAG].state_dim == 14 and info.tags[YAM_TAG].action_horizon == 30
        assert info.camera_keys == ("top_cam", "left_cam", "right_cam")
        PolicyIO(load_embodiment("yam_bimanual")).check_backend(info)
        with pytest.raises(PolicyIOError, match="franka_droid.*only: yam_dual_molmoact2"):
            PolicyIO(load_embodiment("franka_droid")).check_backend(info)
    finally:
        emulator.stop()


def test_json_numpy_scalars_and_plain_lists_decode_through_our_codec():
    """json_numpy writes numpy scalars as shape-[] arrays; a plain-JSON client may send nested lists."""
    from molmoact2_policy.server import codec, official

    back = codec.loads_json(json_numpy.dumps({"num_steps": np.int64(4), "state": np.zeros(3, np.float32)}).encode())
    assert int(back["num_steps"]) == 4
    img = _picture(4, 5, (1, 2, 3))
    payload = json.loads(json.dumps({"top_cam": img.tolist()}))
    np.testing.assert_array_equal(official.camera_images(payload, ["top"])[0], img)
