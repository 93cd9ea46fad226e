"""Real-time chunking on the tiny checkpoint: the RTC inputs reach the model through every backend
(hf, lerobot, the /act server), the policy runtime builds them from what it published, and a chunk
computed for a stale prefix (an episode reset, an e-stop) is never published."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from molmoact2_common.embodiment import load_embodiment

pytestmark = [pytest.mark.model]

NS = 1_000_000_000
# RTC's guidance pulls the frozen steps onto the prefix; on the tiny checkpoint (10 flow steps,
# max_guidance_weight 10) they land within 0.05 model units (SO-101: degrees, range ~ +-200) where
# an unguided chunk differs by 100+; 0.25 leaves room for float differences between machines.
GUIDANCE_TOLERANCE = 0.25


@pytest.fixture(scope="module")
def so101():
    from molmoact2_policy.core.policy_io import PolicyIO

    emb = load_embodiment("so101")
    io = PolicyIO(emb)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (c.height, c.width, 3), dtype=np.uint8) for c in emb.cameras_in_model_order()]
    return io, images


@pytest.fixture(scope="module")
def hf_backend(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    return make_backend("hf", checkpoint=str(tiny_checkpoint_dir), num_threads=2)


def _request(io, images, seed, rtc=None):
    from molmoact2_policy.core.backends import PolicyRequest

    state = io.state_to_model(io.state_joints, [0.1] * len(io.state_joints))
    return PolicyRequest(images=images, state=state, instruction="pick up the cube", norm_tag=io.norm_tag,
                         camera_names=list(io.camera_order), seed=seed, rtc=rtc)


def _rtc(prefix, delay):
    from molmoact2_policy.core.backends import RtcInputs

    return RtcInputs(prev_chunk_left_over=prefix, inference_delay=delay, execution_horizon=12, max_guidance_weight=10.0)


def _check_prefix_followed(backend, io, images):
    plain = backend.predict(_request(io, images, seed=0)).actions
    previous = backend.predict(_request(io, images, seed=1)).actions  # the chunk being executed
    out = {}
    for delay in (1, 4, 8):
        guided = backend.predict(_request(io, images, seed=0, rtc=_rtc(previous[:20], delay))).actions
        frozen = slice(0, delay)
        assert np.abs(plain[frozen] - previous[frozen]).max() > 10 * GUIDANCE_TOLERANCE  # unguided: elsewhere
        assert np.abs(guided[frozen] - previous[frozen]).max() < GUIDANCE_TOLERANCE, delay
        out[delay] = guided
    return out


def test_rtc_inputs_reach_the_hf_model_and_the_generated_prefix_matches_the_frozen_steps(hf_backend, so101):
    io, images = so101
    assert hf_backend.info().rtc
    _check_prefix_followed(hf_backend, io, images)
    # a request without RTC inputs after RTC ones is the plain chunk again (the flow loop is restored)
    a = hf_backend.predict(_request(io, images, seed=0)).actions
    np.testing.assert_array_equal(a, hf_backend.predict(_request(io, images, seed=0)).actions)


def test_rtc_inputs_reach_lerobots_policy_and_give_the_hf_backends_chunk(tiny_checkpoint_dir, hf_backend, so101):
    from molmoact2_policy.core.backends import make_backend

    io, images = so101
    lr = make_backend("lerobot", checkpoint=str(tiny_checkpoint_dir), norm_tag=io.norm_tag,
                      camera_names=list(io.camera_order), num_threads=2)
    assert lr.info().rtc
    guided = _check_prefix_followed(lr, io, images)
    previous = hf_backend.predict(_request(io, images, seed=1)).actions
    hf = hf_backend.predict(_request(io, images, seed=0, rtc=_rtc(previous[:20], 4))).actions
    np.testing.assert_allclose(guided[4], hf, atol=1e-3)  # LeRobot's own RTC loop = ours in the hf backend


def test_a_fine_tuned_lerobot_policy_directory_takes_rtc_inputs_and_follows_the_prefix(so101):
    """lerobot-train leaves inference_action_mode unset in the fine-tune's config, which LeRobot's
    supports_rtc() reads: the backend sets it to its own mode, so RTC is not refused."""
    from pathlib import Path

    from molmoact2_policy.core.backends import make_backend

    io, images = so101
    ft = Path(__file__).resolve().parents[3] / "models" / "so101_touch_cube"
    lr = make_backend("lerobot", checkpoint=str(ft), norm_tag=io.norm_tag, camera_names=list(io.camera_order), num_threads=2)
    assert lr.info().rtc
    plain = lr.predict(_request(io, images, seed=0)).actions
    previous = lr.predict(_request(io, images, seed=1)).actions  # inside the fine-tune's action quantiles
    # on the fine-tune the chunks of two seeds differ less (0.4-4.9 model units per joint, where the
    # tiny checkpoint's differ by 100+), and the guidance's residual grows with how far it pulls:
    # each frozen step within the tolerance plus a tenth of how far the unguided chunk is, per joint
    # (measured: 0.001-0.32 against 0.4-4.9)
    for delay in (1, 4, 8):
        guided = lr.predict(_request(io, images, seed=0, rtc=_rtc(previous[:20], delay))).actions
        unguided = np.abs(plain[:delay] - previous[:delay]).max(axis=0)
        assert unguided.max() > 10 * GUIDANCE_TOLERANCE
        assert np.all(np.abs(guided[:delay] - previous[:delay]) < GUIDANCE_TOLERANCE + 0.1 * unguided), delay


def test_think_mode_takes_rtc_inputs_after_its_depth_prefix(tiny_think_checkpoint_dir, so101):
    from molmoact2_policy.core.backends import make_backend

    io, images = so101
    think = make_backend("hf", checkpoint=str(tiny_think_checkpoint_dir), think=True, num_threads=2)
    assert think.info().rtc  # Think reasons about depth, then runs the same flow: the guidance applies
    previous = think.predict(_request(io, images, seed=1)).actions
    out = think.predict(_request(io, images, seed=0, rtc=_rtc(previous[:20], 4)))
    assert out.depth_codes is not None
    assert np.abs(out.actions[:4] - previous[:4]).max() < GUIDANCE_TOLERANCE


def test_discrete_mode_says_it_takes_no_rtc_inputs(tiny_checkpoint_dir, so101):
    from molmoact2_policy.core.backends import BackendError, make_backend

    io, images = so101
    disc = make_backend("hf", checkpoint=str(tiny_checkpoint_dir), action_mode="discrete")
    assert not disc.info().rtc
    with pytest.raises(BackendError, match="continuous"):
        disc.predict(_request(io, images, 0, rtc=_rtc(np.zeros((10, 6), np.float32), 2)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rtc_inputs_reach_the_model_through_the_act_server_as_optional_fields(hf_backend, so101):
    import uvicorn

    from molmoact2_policy.core.backends import make_backend
    from molmoact2_policy.server.app import create_app

    io, images = so101
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(hf_backend, list(io.camera_order), io.norm_tag),
                                           host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        previous = hf_backend.predict(_request(io, images, seed=1)).actions
        local = hf_backend.predict(_request(io, images, seed=0, rtc=_rtc(previous[:20], 4))).actions
        plain = hf_backend.predict(_request(io, images, seed=0)).actions
        for encoding in ("binary", "json"):
            remote = make_backend("remote", url=f"http://127.0.0.1:{port}", encoding=encoding, timeout_s=30)
            assert remote.info().rtc  # the health check says so
            got = remote.predict(_request(io, images, seed=0, rtc=_rtc(previous[:20], 4))).actions
            np.testing.assert_allclose(got, local, atol=1e-4)
            # without the fields (as every official client sends): served exactly as before
            np.testing.assert_allclose(remote.predict(_request(io, images, seed=0)).actions, plain, atol=1e-4)
    finally:
        server.should_exit = True
        th.join(10)


# ---------------------------------------------------------------------------- the runtime

class _Sink:
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


class _GatedBackend:
    """The real backend, holding its result until the test opens the gate (an inference that is
    still running when the episode ends); records each request's RTC inputs."""

    def __init__(self, backend):
        self.backend = backend
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.requests = []

    def info(self):
        return self.backend.info()

    def predict(self, request):
        self.requests.append(request)
        result = self.backend.predict(request)
        self.started.set()
        assert self.gate.wait(30)
        return result

    def reset(self):
        self.backend.reset()

    def close(self):
        pass


def _wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pred()


@pytest.fixture(params=[False], ids=["lerobot_rtc"])
def rtc_runtime(request, hf_backend, so101):
    from molmoact2_policy.core.policy_runtime import ObservationInput, PolicyRuntime, RuntimeConfig
    from molmoact2_policy.core.rtc import RtcSettings

    io, images = so101
    clock = {"ns": 50 * NS}
    gated = _GatedBackend(hf_backend)
    sink = _Sink()
    rt = PolicyRuntime(gated, io, RuntimeConfig(max_age_s=0.0, joint_state_max_age_s=0.0, episode_gap_s=0.0, seed=0,
                                                chunk_mode="rtc", rtc=RtcSettings(prefix_blend=request.param)),
                       sink, now_ns=lambda: clock["ns"])
    rt.set_instruction("pick up the cube")
    rt.activate()
    rt.start_thread()

    def offer(stamp_ns):
        rt.offer_observation(ObservationInput(stamp_ns, list(io.camera_order), images, [stamp_ns] * len(images),
                                              [False] * len(images), list(io.state_joints), [0.1] * len(io.state_joints)))

    yield rt, gated, sink, clock, offer, io
    gated.gate.set()
    rt.shutdown()


def test_runtime_rtc_request_carries_the_published_chunks_rest_and_the_measured_delay(rtc_runtime):
    rt, gated, sink, clock, offer, io = rtc_runtime
    clock["ns"] = 50 * NS + int(0.1 * NS)  # published 100 ms after capture
    offer(50 * NS)
    assert _wait(lambda: len(sink.chunks) == 1)
    assert gated.requests[0].rtc is None  # first chunk of the episode
    later = 50 * NS + int(round(5 * io.dt * NS))  # the next observation, 5 steps later
    clock["ns"] = later + int(0.1 * NS)
    offer(later)
    assert _wait(lambda: len(sink.chunks) == 2)
    rtc = gated.requests[1].rtc
    assert rtc is not None and rtc.inference_delay == 3  # ceil(100 ms / 33.3 ms)
    first_wire = sink.chunks[0].positions
    np.testing.assert_allclose(io.actions_to_wire(rtc.prev_chunk_left_over), first_wire[5:], atol=1e-5)
    # the new chunk continues the old one over the frozen steps (wire units: radians, gripper 0..1)
    second_wire = sink.chunks[1].positions
    assert np.abs(second_wire[:3] - first_wire[5:8]).max() < 0.01


@pytest.mark.parametrize("rtc_runtime", [True], ids=["prefix_blend"], indirect=True)
def test_runtime_prefix_blend_publishes_the_frozen_steps_as_the_published_chunk_exactly(rtc_runtime):
    """rtc.prefix_blend: the real model's guided chunk, blended onto its prefix, continues the chunk
    the arm is executing exactly over the frozen steps, and is the model's own beyond the horizon."""
    rt, gated, sink, clock, offer, io = rtc_runtime
    clock["ns"] = 50 * NS + int(0.1 * NS)
    offer(50 * NS)
    assert _wait(lambda: len(sink.chunks) == 1)
    later = 50 * NS + int(round(5 * io.dt * NS))
    clock["ns"] = later + int(0.1 * NS)
    offer(later)
    assert _wait(lambda: len(sink.chunks) == 2)
    rtc = gated.requests[1].rtc
    assert rtc.inference_delay == 3
    first_wire, second_wire = sink.chunks[0].positions, sink.chunks[1].positions
    np.testing.assert_allclose(second_wire[:3], first_wire[5:8], atol=1e-5)  # frozen: the old chunk, not ~0.01 off
    generated = gated.backend.predict(gated.requests[1]).actions  # the same request again: the model's own chunk
    beyond = min(rtc.execution_horizon, len(rtc.prev_chunk_left_over))
    np.testing.assert_allclose(second_wire[beyond:], io.actions_to_wire(generated)[beyond:], atol=1e-5)
    assert np.abs(io.actions_to_wire(generated)[:3] - first_wire[5:8]).max() > 1e-4  # the blend did something


@pytest.mark.parametrize("how", ["reset", "deactivate"])
def test_runtime_never_publishes_a_chunk_computed_for_a_stale_prefix(rtc_runtime, how):
    rt, gated, sink, clock, offer, io = rtc_runtime
    offer(50 * NS)
    assert _wait(lambda: len(sink.chunks) == 1)
    gated.gate.clear()
    gated.started.clear()
    offer(50 * NS + int(0.1 * NS))
    assert gated.started.wait(30)
    assert gated.requests[-1].rtc is not None  # this inference continues chunk 1 ...
    if how == "reset":  # ... when the episode ends under it (the node's ~/reset and e-stop call this)
        rt.reset()
    else:  # ... or inference is paused (~/stop, deactivate), then started again (a new episode)
        rt.deactivate("stopped")
        rt.activate()
    gated.gate.set()
    offer(50 * NS + int(0.3 * NS))
    assert _wait(lambda: len(sink.chunks) == 2)
    assert len(gated.requests) == 3
    assert gated.requests[-1].rtc is None  # the new episode starts without the old prefix
    assert rt.last_rtc is None  # and the second chunk published is that one, not the stale one
    assert sink.chunks[1].stamp_ns == 50 * NS + int(0.3 * NS)


def test_an_observation_is_handed_over_only_to_an_idle_worker_which_then_reaches_the_model(rtc_runtime):
    from molmoact2_policy.core.policy_runtime import ObservationInput

    rt, gated, sink, clock, offer, io = rtc_runtime
    assert _wait(lambda: rt._worker_idle)
    gated.gate.clear()
    obs = lambda stamp: ObservationInput(stamp, list(io.camera_order), [np.zeros((96, 128, 3), np.uint8)] * 2,  # noqa: E731
                                         [stamp] * 2, [False] * 2, list(io.state_joints), [0.1] * len(io.state_joints))
    assert rt.offer_observation(obs(50 * NS))  # idle worker: the callback may wait for the hand-off
    assert rt.wait_handoff(30)  # returns once the worker is in the model call
    assert gated.started.wait(30)
    assert not rt.offer_observation(obs(51 * NS))  # busy worker: nothing to wait for
    gated.gate.set()
    assert _wait(lambda: len(sink.chunks) == 2)


# ---------------------------------------------------------------------------- the node

def _policy(ros, ckpt, **params):
    from rclpy.parameter import Parameter

    from molmoact2_policy.nodes.policy_node import PolicyNode

    overrides = [Parameter("checkpoint", value=str(ckpt)), Parameter("max_age_s", value=0.0),
                 Parameter("num_threads", value=2), Parameter("embodiment", value="so101")]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    node = PolicyNode(context=ros.context, parameter_overrides=overrides)
    ros.add(node)
    return node


@pytest.mark.ros
def test_policy_node_refuses_rtc_in_discrete_mode_at_configure_saying_why(ros, tiny_checkpoint_dir):
    from lifecycle_msgs.msg import State

    node = _policy(ros, tiny_checkpoint_dir, chunk_mode="rtc", action_mode="discrete", warmup=False)
    node.trigger_configure()
    assert node._state_machine.current_state[0] != State.PRIMARY_STATE_INACTIVE
    assert node.runtime is None
    assert "chunk_mode' = rtc" in node._static[1] and "discrete" in node._static[1]


@pytest.mark.ros
def test_policy_node_rtc_mode_and_an_estop_drops_the_prefix(ros, tiny_checkpoint_dir):
    from molmoact2_common import qos
    from molmoact2_msgs.msg import ActionChunk, Observation
    from std_msgs.msg import Bool

    from molmoact2_policy.ros_conversions import ns_to_time, rgb_to_image_msg

    node = _policy(ros, tiny_checkpoint_dir, chunk_mode="rtc", seed=0, instruction="pick up the cube",
                   episode_gap_s=0.0, joint_state_max_age_s=0.0, **{"rtc.execution_horizon": 8})
    node.trigger_configure()
    node.trigger_activate()
    probe = ros.node("rtc_probe")
    chunks = []
    probe.create_subscription(ActionChunk, "action_chunk", chunks.append, qos.ACTION_CHUNK)
    obs_pub = probe.create_publisher(Observation, "observation", qos.OBSERVATION)
    estop_pub = probe.create_publisher(Bool, "estop", qos.ESTOP)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(2)]

    def send(stamp_ns):
        m = Observation()
        m.header.stamp = ns_to_time(stamp_ns)
        m.camera_names = ["front", "wrist"]
        m.images = [rgb_to_image_msg(im, stamp_ns) for im in images]
        m.capture_stamps = [ns_to_time(stamp_ns)] * 2
        m.camera_stale = [False, False]
        m.joint_state.name = list(node.io.state_joints)
        m.joint_state.position = [0.1] * len(node.io.state_joints)
        obs_pub.publish(m)

    assert ros.wait_for_subscribers(obs_pub, timeout=10) and ros.wait_for_subscribers(estop_pub, timeout=10)
    now = node.get_clock().now().nanoseconds
    send(now)
    assert ros.spin_until(lambda: len(chunks) >= 1, 30)
    send(now + 100_000_000)
    assert ros.spin_until(lambda: len(chunks) >= 2, 30)
    assert node.runtime.last_rtc is not None  # chunk 2 continued chunk 1
    assert node.runtime.last_rtc.execution_horizon == 8
    episode = node.runtime.episode
    estop_pub.publish(Bool(data=True))
    assert ros.spin_until(lambda: node.runtime.episode > episode, 10)
    send(now + 200_000_000)
    assert ros.spin_until(lambda: len(chunks) >= 3, 30)
    assert node.runtime.last_rtc is None  # after the e-stop: no prefix from before it
