"""Policy I/O by name and the inference runtime (ROS-free) on the tiny checkpoints."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from molmoact2_common.embodiment import load_embodiment

YAM_CAMS = ["top", "left", "right"]


class Sink:
    def __init__(self):
        self.chunks, self.states, self.warnings, self.consumed = [], [], [], []
        self.event = threading.Event()

    def consuming(self, stamp_ns):
        self.consumed.append(stamp_ns)

    def chunk(self, out):
        self.chunks.append(out)
        self.event.set()

    def status(self, state, message):
        self.states.append((state, message))
        self.event.set()

    def warn(self, key, message):
        self.warnings.append(message)
        self.event.set()

    def wait(self, pred, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            self.event.wait(0.05)
            self.event.clear()
        return pred()


# ---------------------------------------------------------------------------- policy I/O (no model)

def test_policy_io_assembles_state_and_images_by_name_in_model_units():
    from molmoact2_policy.core.policy_io import PolicyIO

    io = PolicyIO(load_embodiment("so101"))
    imgs = {c: np.full((4, 4, 3), i, np.uint8) for i, c in enumerate(["front", "wrist"])}
    names = ["gripper", "shoulder_lift", "shoulder_pan", "elbow_flex", "wrist_flex", "wrist_roll"]
    wire = {"shoulder_pan": 0.5, "shoulder_lift": 0.2, "elbow_flex": -0.1, "wrist_flex": 0.0, "wrist_roll": 1.0, "gripper": 0.4}
    images, state = io.assemble(["wrist", "front"], [imgs["wrist"], imgs["front"]], names, [wire[n] for n in names])
    assert images[0] is imgs["front"] and images[1] is imgs["wrist"]
    np.testing.assert_allclose(state, [np.degrees(0.5), -np.degrees(0.2) + 90, np.degrees(-0.1) + 90, 0.0,
                                       np.degrees(1.0), 40.0], rtol=1e-6)
    back = io.actions_to_wire(state[None, :])
    np.testing.assert_allclose(back[0], [wire[j] for j in io.action_joints], atol=1e-5)


def test_policy_io_refuses_a_missing_camera_or_joint_naming_it():
    from molmoact2_policy.core.policy_io import PolicyIO, PolicyIOError

    io = PolicyIO(load_embodiment("yam_bimanual"))
    with pytest.raises(PolicyIOError, match="camera\\(s\\) right"):
        io.order_images(["top", "left"], [np.zeros((2, 2, 3), np.uint8)] * 2)
    with pytest.raises(PolicyIOError, match="right_gripper"):
        io.state_to_model(io.state_joints[:-1], [0.0] * 13)


def test_policy_io_refuses_checkpoint_mismatches_naming_both_sides():
    from molmoact2_policy.core.backends import BackendInfo, TagInfo
    from molmoact2_policy.core.policy_io import PolicyIO, PolicyIOError

    io = PolicyIO(load_embodiment("franka_droid"))
    ok = TagInfo("franka_droid", 8, 8, 15, 15, "absolute joint position", cameras=("external", "wrist"))
    io.check_backend(BackendInfo("hf", "ckpt", {"franka_droid": ok}))
    ee = TagInfo("franka_droid", 8, 8, 15, 15, "delta end effector pose")
    with pytest.raises(PolicyIOError, match="action space mismatch.*joint_position.*end_effector"):
        io.check_backend(BackendInfo("hf", "ckpt", {"franka_droid": ee}))
    with pytest.raises(PolicyIOError, match="action size mismatch.*8 action joints.*7"):
        io.check_backend(BackendInfo("hf", "ckpt", {"franka_droid": TagInfo("franka_droid", 8, 7, 15, 15)}))
    with pytest.raises(PolicyIOError, match="camera set mismatch.*external, wrist.*top_cam"):
        io.check_backend(BackendInfo("remote", "url", {}, camera_keys=("top_cam", "left_cam", "right_cam")))
    with pytest.raises(PolicyIOError, match="franka_droid.*libero"):
        io.check_backend(BackendInfo("hf", "ckpt", {"libero": ok}))


def test_camera_names_are_matched_not_counted():
    """Three checkpoint cameras for three embodiment cameras is not enough: the names must match."""
    from molmoact2_policy.core.backends import BackendInfo, TagInfo
    from molmoact2_policy.core.policy_io import PolicyIO, PolicyIOError

    io = PolicyIO(load_embodiment("yam_bimanual"))  # top, left, right

    def tag(cams):
        return {"yam_dual_molmoact2": TagInfo("yam_dual_molmoact2", 14, 14, 30, 30, "absolute joint position",
                                              cameras=cams)}

    io.check_backend(BackendInfo("hf", "ckpt", tag(("top", "left", "right"))))
    with pytest.raises(PolicyIOError, match="camera set mismatch.*top, left, right.*top, left, wrist.*"
                                            "no checkpoint camera for right; no embodiment camera for wrist"):
        io.check_backend(BackendInfo("hf", "ckpt", tag(("top", "left", "wrist"))))
    # the hf backend gives the images in model.camera_order: the same names in another order is refused
    with pytest.raises(PolicyIOError, match="camera order mismatch.*top, left, right.*left, top, right"):
        io.check_backend(BackendInfo("hf", "ckpt", tag(("left", "top", "right"))))
    # backends that take images under keys match the keys by name, in any order
    io.check_backend(BackendInfo("remote", "url", {}, camera_keys=("top_cam", "left_cam", "right_cam")))
    io.check_backend(BackendInfo("lerobot", "ft", tag(None), camera_keys=(
        "observation.images.right", "observation.images.top", "observation.images.left")))
    with pytest.raises(PolicyIOError, match="camera set mismatch.*observation.images.cam_high.*no checkpoint camera "
                                            "for top; no embodiment camera for observation.images.cam_high"):
        io.check_backend(BackendInfo("lerobot", "ft", tag(None), camera_keys=(
            "observation.images.cam_high", "observation.images.left", "observation.images.right")))


# ---------------------------------------------------------------------------- runtime (tiny model)

def _runtime(backend, sink, **cfg):
    from molmoact2_policy.core.policy_io import PolicyIO
    from molmoact2_policy.core.policy_runtime import PolicyRuntime, RuntimeConfig

    io = PolicyIO(load_embodiment("yam_bimanual"))
    clock = {"t": 100.0}
    rt = PolicyRuntime(backend, io, RuntimeConfig(**{"max_age_s": 0.0, **cfg}), sink, now_ns=time.monotonic_ns,
                       monotonic=lambda: clock["t"])
    rt.clock = clock
    return rt, io


def _obs(io, stamp, images=None, stale=None):
    from molmoact2_policy.core.policy_runtime import ObservationInput

    rng = np.random.default_rng(0)
    images = images or [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in YAM_CAMS]
    return ObservationInput(stamp, list(YAM_CAMS), images, [stamp] * 3, stale or [False] * 3, list(io.state_joints),
                            [0.2] * len(io.state_joints))


@pytest.fixture(scope="module")
def think_backend(tiny_think_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    return make_backend("hf", checkpoint=str(tiny_think_checkpoint_dir), think=True)


@pytest.mark.model
def test_runtime_stale_observation_is_refused_naming_the_camera(think_backend):
    sink = Sink()
    rt, io = _runtime(think_backend, sink)
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        rt.offer_observation(_obs(io, 1, stale=[False, False, True]))
        assert sink.wait(lambda: sink.warnings)
        assert "right" in sink.warnings[0] and not sink.chunks
    finally:
        rt.shutdown()


@pytest.mark.model
def test_runtime_status_names_why_no_chunk_comes_and_the_next_chunk_clears_it(think_backend):
    sink = Sink()
    rt, io = _runtime(think_backend, sink, episode_gap_s=0.0)
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        rt.offer_observation(_obs(io, 1, stale=[False, False, True]))
        assert sink.wait(lambda: rt.message.startswith("observation refused") and "right" in rt.message)
        assert rt.state == "running" and not sink.chunks
        rt.offer_observation(_obs(io, 2))
        assert sink.wait(lambda: sink.chunks and rt.message == "")
        rt.clock["t"] += 3.0  # the camera pipeline stopped: nothing offered for 3 s
        assert sink.wait(lambda: rt.message.startswith("no observation for 3.0 s"), timeout=5)
        assert sink.states[-1][1] == rt.message  # published, not only set
        rt.offer_observation(_obs(io, 3))
        assert sink.wait(lambda: len(sink.chunks) == 2 and rt.message == "")
    finally:
        rt.shutdown()


@pytest.mark.model
def test_runtime_on_demand_mode_infers_only_when_a_chunk_is_requested(think_backend):
    sink = Sink()
    rt, io = _runtime(think_backend, sink, rate_mode="on_demand")
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        rt.offer_observation(_obs(io, 1))
        assert not sink.wait(lambda: sink.consumed, timeout=0.5)
        rt.request_chunk()
        assert sink.wait(lambda: sink.chunks)
        assert sink.chunks[0].stamp_ns == 1 and sink.chunks[0].sequence == 1
    finally:
        rt.shutdown()


@pytest.mark.model
def test_runtime_observation_gap_starts_a_new_episode_and_drops_the_depth_cache(think_backend):
    sink = Sink()
    rt, io = _runtime(think_backend, sink, episode_gap_s=1.0)
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        rt.offer_observation(_obs(io, 1))
        assert sink.wait(lambda: len(sink.chunks) == 1)
        rt.clock["t"] += 0.1
        rt.offer_observation(_obs(io, 2))
        assert sink.wait(lambda: len(sink.chunks) == 2)
        assert not sink.chunks[1].depth_refreshed.any()  # same images, same episode: all replayed
        episode = rt.episode
        rt.clock["t"] += 5.0  # a gap longer than episode_gap_s
        rt.offer_observation(_obs(io, 3))
        assert sink.wait(lambda: len(sink.chunks) == 3)
        assert rt.episode == episode + 1
        assert sink.chunks[2].depth_refreshed.all()
        assert any("new episode" in w for w in sink.warnings)
    finally:
        rt.shutdown()


@pytest.mark.model
def test_runtime_max_episode_duration_stops_inference(think_backend):
    sink = Sink()
    rt, io = _runtime(think_backend, sink, max_episode_s=10.0)
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        rt.clock["t"] += 11.0
        assert sink.wait(lambda: any("max_episode_s" in m for _, m in sink.states), timeout=5)
        rt.offer_observation(_obs(io, 1))
        assert not sink.wait(lambda: sink.chunks, timeout=0.5)
    finally:
        rt.shutdown()


@pytest.mark.model
def test_runtime_nan_chunk_is_not_published_and_status_goes_to_error(tiny_checkpoint_dir, tmp_path):
    """A checkpoint whose action head outputs NaN: nothing is published, status error (the arm holds)."""
    import torch
    from safetensors.torch import load_file, save_file

    from molmoact2_policy.core.backends import make_backend

    ckpt = tmp_path / "nan"
    shutil.copytree(tiny_checkpoint_dir, ckpt)
    state = load_file(str(ckpt / "model.safetensors"))
    key = next(k for k in state if k.startswith("model.action_expert.final_layer") and k.endswith("bias"))
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    sink = Sink()
    rt, io = _runtime(make_backend("hf", checkpoint=str(ckpt)), sink)
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        rt.offer_observation(_obs(io, 1))
        assert sink.wait(lambda: any(s == "error" and "NaN" in m for s, m in sink.states))
        assert not sink.chunks
    finally:
        rt.shutdown()


@pytest.mark.model
def test_runtime_always_infers_on_the_newest_observation(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    sink = Sink()
    rt, io = _runtime(make_backend("hf", checkpoint=str(tiny_checkpoint_dir)), sink, rate_mode="fixed", rate_hz=50.0)
    for stamp in range(1, 6):  # queued before the worker runs: only the newest survives
        rt.offer_observation(_obs(io, stamp))
    rt.set_instruction("fold")
    rt.activate()
    for stamp in range(10, 15):
        rt.offer_observation(_obs(io, stamp))
    rt.start_thread()
    try:
        assert sink.wait(lambda: sink.chunks)
        assert sink.chunks[0].stamp_ns == 14
        assert sink.consumed == [14]
    finally:
        rt.shutdown()


@pytest.fixture(scope="module")
def plain_backend(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    return make_backend("hf", checkpoint=str(tiny_checkpoint_dir), num_threads=1)


@pytest.mark.model
def test_max_episode_stops_inference_within_one_chunk_under_load(plain_backend):
    """Observations keep coming (the worker is never idle): the episode still ends at max_episode_s,
    with at most the one chunk that was being computed when the limit passed."""
    sink = Sink()
    rt, io = _runtime(plain_backend, sink, max_episode_s=1.0)
    template = _obs(io, 1)
    stop = threading.Event()

    def feed():
        k = 0
        while not stop.is_set():
            k += 1
            rt.offer_observation(_obs(io, k, images=template.images))
            stop.wait(0.002)  # steady observations, much faster than the model

    feeder = threading.Thread(target=feed, daemon=True)
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        feeder.start()
        assert sink.wait(lambda: len(sink.chunks) >= 3)  # running under load, within the limit
        at_limit = len(sink.chunks)
        rt.clock["t"] += 1.5  # the episode is now past max_episode_s
        ended = lambda: any(s == "paused" and "max_episode_s" in m for s, m in sink.states)  # noqa: E731
        assert sink.wait(lambda: ended() or len(sink.chunks) >= at_limit + 5, timeout=30)
        assert ended(), sink.states[-3:]
        assert len(sink.chunks) - at_limit <= 1
        after = len(sink.chunks)
        assert not sink.wait(lambda: len(sink.chunks) > after, timeout=0.5)  # still fed, nothing more
        assert not rt.active
    finally:
        stop.set()
        rt.shutdown()


def _with_joints(obs, *sources):
    """sources: (name, stamp_ns, stale) per arm driver, as the camera node reports them."""
    obs.joint_sources = [s[0] for s in sources]
    obs.joint_source_stamps_ns = [s[1] for s in sources]
    obs.joint_source_stale = [s[2] for s in sources]
    return obs


@pytest.mark.model
def test_stale_joint_state_of_one_arm_is_refused_by_name(plain_backend):
    """Bimanual YAM, one driver dead or lagging: the other arm never acts on the frozen state; the
    refusal names the arm's joint-state source."""
    sink = Sink()
    rt, io = _runtime(plain_backend, sink, joint_state_max_age_s=1.0, joint_state_max_skew_s=0.1)
    now = time.monotonic_ns
    rt.start_thread()
    try:
        rt.set_instruction("fold")
        rt.activate()
        rt.offer_observation(_with_joints(_obs(io, 1), ("left/joint_states", now(), False),
                                          ("right/joint_states", now(), False)))
        assert sink.wait(lambda: len(sink.chunks) == 1)

        def refused(obs):
            n = len(sink.warnings)
            rt.offer_observation(obs)
            assert sink.wait(lambda: len(sink.warnings) > n)
            assert len(sink.chunks) == 1
            return sink.warnings[-1]

        # the camera node flagged the right arm's joint state stale
        msg = refused(_with_joints(_obs(io, 2), ("left/joint_states", now(), False), ("right/joint_states", now(), True)))
        assert "right/joint_states" in msg and "left/joint_states" not in msg
        # the right arm's joint state is older than joint_state_max_age_s
        msg = refused(_with_joints(_obs(io, 3), ("left/joint_states", now(), False),
                                   ("right/joint_states", now() - 2_000_000_000, False)))
        assert "'right/joint_states'" in msg and "joint_state_max_age_s" in msg
        # both young, but the left arm lags the right one by more than joint_state_max_skew_s
        msg = refused(_with_joints(_obs(io, 4), ("left/joint_states", now() - 150_000_000, False),
                                   ("right/joint_states", now(), False)))
        assert "'left/joint_states'" in msg and "behind 'right/joint_states'" in msg and "joint_state_max_skew_s" in msg
        # fresh again: inference resumes
        rt.offer_observation(_with_joints(_obs(io, 5), ("left/joint_states", now(), False),
                                          ("right/joint_states", now(), False)))
        assert sink.wait(lambda: len(sink.chunks) == 2)
        assert [c.stamp_ns for c in sink.chunks] == [1, 5]
    finally:
        rt.shutdown()
