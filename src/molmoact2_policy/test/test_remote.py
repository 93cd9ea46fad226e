"""The /act protocol: codecs, our server over the tiny checkpoint, the remote backend, failures."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from molmoact2_policy.server import codec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_json_encoding_is_json_numpy_wire_compatible():
    json_numpy = pytest.importorskip("json_numpy")
    obj = {"top_cam": np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "state": np.linspace(0, 1, 14, dtype=np.float32),
           "instruction": "fold"}
    theirs = json_numpy.loads(codec.dumps_json(obj).decode())
    ours = codec.loads_json(json_numpy.dumps(obj).encode())
    for decoded in (theirs, ours):
        np.testing.assert_array_equal(decoded["top_cam"], obj["top_cam"])
        assert decoded["state"].dtype == np.float32 and decoded["instruction"] == "fold"


def test_binary_encoding_round_trips_arrays_and_values():
    obj = {"a": np.random.default_rng(0).integers(0, 255, (36, 64, 3), dtype=np.uint8),
           "s": np.ones(6, np.float32), "instruction": "x", "n": 3, "empty": np.zeros((0, 4), np.float32)}
    back = codec.loads_binary(codec.dumps_binary(obj))
    for k in ("a", "s", "empty"):
        np.testing.assert_array_equal(back[k], obj[k])
        assert back[k].dtype == obj[k].dtype
    assert back["instruction"] == "x" and back["n"] == 3
    with pytest.raises(codec.CodecError, match="magic"):
        codec.loads_binary(b"nope")


def test_server_refuses_to_bind_beyond_localhost_without_a_token():
    from molmoact2_policy.server.app import ServerConfigError, check_bind, main

    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "s3cret")
    with pytest.raises(ServerConfigError, match="token"):
        check_bind("0.0.0.0", None)
    assert main(["--checkpoint", "/nonexistent", "--norm-tag", "x", "--protocol", "yam", "--host", "0.0.0.0", "--token", ""]) == 2


class _Server:
    def __init__(self, backend, cameras, norm_tag, token=None):
        import uvicorn

        from molmoact2_policy.server.app import create_app

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(backend, cameras, norm_tag, token), host="127.0.0.1",
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
def yam_server(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    backend = make_backend("hf", checkpoint=str(tiny_checkpoint_dir))
    server = _Server(backend, ["top", "left", "right"], "yam_dual_molmoact2", token="s3cret")
    yield server, backend
    server.stop()


def _yam_request(seed=3):
    from molmoact2_policy.core.backends import PolicyRequest

    rng = np.random.default_rng(1)
    return PolicyRequest(images=[rng.integers(0, 255, (72, 128, 3), dtype=np.uint8) for _ in range(3)],
                         state=np.linspace(-0.3, 0.3, 14).astype(np.float32), instruction="fold the towel",
                         norm_tag="yam_dual_molmoact2", camera_names=["top", "left", "right"], seed=seed)


@pytest.mark.model
@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_remote_backend_through_our_server_equals_the_local_backend(yam_server, encoding):
    from molmoact2_policy.core.backends import make_backend

    server, local = yam_server
    remote = make_backend("remote", url=server.url, encoding=encoding, protocol="yam", token="s3cret", timeout_s=30)
    info = remote.info()
    assert info.camera_keys == ("top_cam", "left_cam", "right_cam")
    assert info.tags["yam_dual_molmoact2"].state_dim == 14
    got = remote.predict(_yam_request())
    want = local.predict(_yam_request())
    np.testing.assert_array_equal(got.actions, want.actions)
    assert got.actions.dtype == np.float32 and got.timings["server_ms"] > 0


@pytest.mark.model
def test_remote_backend_jpeg_variant_returns_a_chunk(yam_server):
    from molmoact2_policy.core.backends import make_backend

    server, _ = yam_server
    remote = make_backend("remote", url=server.url, encoding="jpeg", token="s3cret", timeout_s=30)
    assert remote.predict(_yam_request()).actions.shape == (30, 14)


@pytest.mark.model
def test_server_rejects_a_request_without_the_token_and_names_missing_cameras(yam_server):
    from molmoact2_policy.core.backends import BackendError, PolicyRequest, make_backend

    server, _ = yam_server
    with pytest.raises(BackendError, match="401"):
        make_backend("remote", url=server.url, timeout_s=30).predict(_yam_request())
    req = _yam_request()
    bad = PolicyRequest(images=req.images[:2], state=req.state, instruction="x", norm_tag=req.norm_tag,
                        camera_names=["top", "left"])
    with pytest.raises(BackendError, match="right_cam"):
        make_backend("remote", url=server.url, token="s3cret", timeout_s=30).predict(bad)


def test_remote_server_down_raises_unavailable_quickly():
    from molmoact2_policy.core.backends import BackendUnavailable, make_backend

    remote = make_backend("remote", url=f"http://127.0.0.1:{_free_port()}", timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match="unreachable"):
        remote.predict(_yam_request())
    assert time.monotonic() - t0 < 5.0
    assert remote.info().extra["reachable"] is False


def test_remote_server_that_never_answers_times_out():
    from molmoact2_policy.core.backends import BackendUnavailable, make_backend

    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        remote = make_backend("remote", url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.5)
        with pytest.raises(BackendUnavailable, match="did not answer"):
            remote.predict(_yam_request())


@pytest.mark.model
def test_policy_runtime_retries_a_down_remote_with_backoff_then_recovers(tiny_checkpoint_dir):
    """Server down: status error and retries (never stuck); once it comes up, chunks flow."""
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_policy.core.backends import make_backend
    from molmoact2_policy.core.policy_io import PolicyIO
    from molmoact2_policy.core.policy_runtime import ERROR, ObservationInput, PolicyRuntime, RuntimeConfig

    class Sink:
        def __init__(self):
            self.chunks, self.states = [], []

        def consuming(self, stamp_ns):
            pass

        def chunk(self, out):
            self.chunks.append(out)

        def status(self, state, message):
            self.states.append((state, message))

        def warn(self, key, message):
            pass

    port = _free_port()
    remote = make_backend("remote", url=f"http://127.0.0.1:{port}", timeout_s=2.0)
    io = PolicyIO(load_embodiment("yam_bimanual"))
    sink = Sink()
    rt = PolicyRuntime(remote, io, RuntimeConfig(max_age_s=0, retry_initial_s=0.05, retry_max_s=0.2), sink,
                       now_ns=time.monotonic_ns)
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        req = _yam_request()
        joints = io.state_joints

        def offer(stamp):
            rt.offer_observation(ObservationInput(stamp, ["top", "left", "right"], req.images, [stamp] * 3,
                                                  [False] * 3, joints, [0.1] * len(joints)))

        offer(1)
        deadline = time.monotonic() + 10
        while not any(s == ERROR and "unavailable" in m for s, m in sink.states) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(s == ERROR and "unavailable" in m for s, m in sink.states)
        local = make_backend("hf", checkpoint=str(tiny_checkpoint_dir))
        from molmoact2_policy.server.app import create_app  # noqa: F401
        import uvicorn
        from molmoact2_policy.server.app import create_app as _ca

        server = uvicorn.Server(uvicorn.Config(_ca(local, ["top", "left", "right"], "yam_dual_molmoact2"),
                                               host="127.0.0.1", port=port, log_level="warning"))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        try:
            deadline = time.monotonic() + 30
            while not sink.chunks and time.monotonic() < deadline:
                offer(2)
                time.sleep(0.1)
            assert sink.chunks, sink.states[-3:]
            assert sink.chunks[0].positions.shape == (30, 14)
        finally:
            server.should_exit = True
            th.join(10)
    finally:
        rt.shutdown()
