"""perception:=composed over real DDS: the composed perception process, started from the deployment
graph exactly as molmoact2-run starts it (installed executable, ``__node``/``__ns`` remaps, the
parameter file keyed by the node's name), runs both nodes under their separate-graph names and
publishes the same Observations and ChangeMasks as the two separate processes for the same frames."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import Image, JointState

from molmoact2_common import qos
from molmoact2_common.bringup.graph import load_deployment, params_file_content, ros_args
from molmoact2_common.bringup.runner import executable_path
from molmoact2_msgs.msg import ChangeMask, Observation, PolicyStatus
from molmoact2_policy import ros_conversions as rc
from molmoact2_policy.nodes.perception_node import forwarded_ros_args
from support.ros_harness import ChildProcess

pytestmark = pytest.mark.ros

CAMERAS = ("top", "left", "right")
NS = 1_000_000_000


def test_the_deployment_argument_selects_one_perception_process_with_both_nodes():
    separate = load_deployment("yam_bimanual")
    composed = load_deployment("yam_bimanual", {"perception": "composed"})
    assert [(n.name, n.executable) for n in separate.nodes if n.name in ("camera_ingestion", "change_mask")] == [
        ("camera_ingestion", "camera_node"), ("change_mask", "masking_node")]
    perception = [n for n in composed.nodes if n.package == "molmoact2_policy" and n.executable in
                  ("camera_node", "masking_node", "perception_node")]
    assert [(n.name, n.executable) for n in perception] == [("camera_ingestion", "perception_node")]
    assert perception[0].parameters == {**separate.node("camera_ingestion").parameters, "mask_node_name": "change_mask"}


def test_the_masking_node_takes_the_namespace_and_topic_remaps_but_not_the_process_name_or_parameters():
    argv = ["perception_node", "--ros-args", "-r", "__node:=camera_ingestion", "-r", "__ns:=/robot", "--params-file", "/p.yaml",
            "-r", "observation:=/obs", "-p", "cameras:=[top]", "--remap", "camera_ingestion:__node:=x", "--", "extra"]
    assert forwarded_ros_args(argv) == ["--ros-args", "-r", "__ns:=/robot", "-r", "observation:=/obs"]
    assert forwarded_ros_args(["perception_node"]) == []


def _start(spec, tmp_path):
    params = tmp_path / f"{spec.namespace.strip('/')}_{spec.name}.params.yaml"
    if spec.executable != "masking_node":  # nothing goes stale while the test waits on a set
        spec.parameters.update(camera_max_age=60.0, camera_max_skew=60.0, joint_max_age=60.0, joint_max_skew=60.0)
    params.write_text(yaml.safe_dump(params_file_content(spec, use_sim_time=False)))
    return ChildProcess([sys.executable, executable_path(spec), *ros_args(spec, str(params))], name=spec.fully_qualified_name)


def _differing(a, b) -> list[str]:
    out = []
    for name in a.get_fields_and_field_types():
        x, y = getattr(a, name), getattr(b, name)
        if x != y:
            if name == "images":
                out += [f"images[{i}].{f}" for i, (u, v) in enumerate(zip(x, y)) for f in u.get_fields_and_field_types()
                        if getattr(u, f) != getattr(v, f)]
            else:
                out.append(f"{name}: {x} vs {y}" if name != "joint_state" else name)
    return out


def _frames(k, rng, base):
    out = {}
    for i, c in enumerate(CAMERAS):
        f = base[i].copy()
        f[30 * k:30 * k + 50, 40 * k:40 * k + 90] = rng.integers(0, 256, (50, 90, 3), dtype=np.uint8)
        out[c] = f
    return out


def test_composed_process_publishes_the_same_observations_and_change_masks_as_the_separate_nodes(ros, tmp_path):
    sep = load_deployment("yam_bimanual", {"namespace": "sep"})
    comp = load_deployment("yam_bimanual", {"namespace": "comp", "perception": "composed"})
    # both graphs assemble an Observation per complete frame set, so both see the same sets
    sep.node("camera_ingestion").parameters["observation_trigger"] = "frames"
    specs = [sep.node("camera_ingestion"), sep.node("change_mask"), comp.node("camera_ingestion")]
    assert specs[2].executable == "perception_node"
    procs = [_start(s, tmp_path) for s in specs]
    logs = lambda: "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in procs)  # noqa: E731
    try:
        node = ros.node("camera_driver_and_policy")
        cams = {c: node.create_publisher(Image, f"/cameras/{c}/color/image_raw", qos.CAMERA_IMAGE) for c in CAMERAS}
        graphs = ("sep", "comp")
        joints = {(g, a): node.create_publisher(JointState, f"/{g}/{a}/joint_states", qos.JOINT_STATE)
                  for g in graphs for a in ("left", "right")}
        status = {g: node.create_publisher(PolicyStatus, f"/{g}/policy_status", qos.POLICY_STATUS) for g in graphs}
        # by the capture stamps of all cameras: a frame re-sent late can make an Observation of one
        # camera's new frame and another's previous one, in either graph; only whole sets are compared
        observations: dict[str, dict[tuple, Observation]] = {g: {} for g in graphs}
        masks: dict[str, dict[tuple[str, int], ChangeMask]] = {g: {} for g in graphs}
        subs = []
        for g in graphs:
            subs.append(node.create_subscription(
                Observation, f"/{g}/observation",
                lambda m, g=g: observations[g].setdefault(tuple(rc.time_to_ns(t) for t in m.capture_stamps), m),
                qos.OBSERVATION))
            for c in CAMERAS:
                subs.append(node.create_subscription(
                    ChangeMask, f"/{g}/change_mask/{c}",
                    lambda m, g=g: masks[g].__setitem__((m.camera, rc.time_to_ns(m.header.stamp)), m), qos.CHANGE_MASK))
        for pub in cams.values():
            assert ros.wait_for_subscribers(pub, count=2, timeout=30), logs()
        for sub in subs[::len(CAMERAS) + 1]:  # the Observations (the maskers publish once they know the cameras)
            assert ros.wait_for_publishers(sub, timeout=30), logs()

        # the same nodes, by name and namespace, in both graphs: the composed process renamed
        # neither to its process name
        want = {(n, f"/{g}") for n in ("camera_ingestion", "change_mask") for g in graphs}
        assert ros.spin_until(lambda: want <= set(node.get_node_names_and_namespaces()), 20), \
            node.get_node_names_and_namespaces()

        rng = np.random.default_rng(0)
        base = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in CAMERAS]
        sets = [_frames(k, rng, base) for k in range(5)]
        start = node.get_clock().now().nanoseconds
        stamp = [start + k * NS // 10 for k in range(5)]
        whole = [tuple(stamp[k] + i for i in range(len(CAMERAS))) for k in range(5)]

        def send(k):
            # the joint states are the same for every set: which set's frames they arrive beside
            # (another topic) must not make the two graphs' Observations differ
            for (g, a), pub in joints.items():
                js = JointState(name=[f"{a}_joint{i}" for i in range(1, 7)] + [f"{a}_gripper"],
                                position=[0.5 if a == "right" else 0.1] * 7)
                js.header.stamp = rc.ns_to_time(start)
                pub.publish(js)
            for i, c in enumerate(CAMERAS):
                cams[c].publish(rc.rgb_to_image_msg(sets[k][c], stamp[k] + i, f"{c}_camera_optical_frame"))

        def deliver(k, done):
            for _ in range(40):  # camera frames are best effort: send the set again until it is through
                send(k)
                if ros.spin_until(done, 0.5):
                    return True
            return False

        assert deliver(0, lambda: all(whole[0] in observations[g] for g in graphs)), logs()
        for sub in subs:
            assert ros.wait_for_publishers(sub, timeout=30), logs()
        for g in graphs:  # the policy consumes set 0: later sets are masked against it
            status[g].publish(PolicyStatus(state=PolicyStatus.STATE_RUNNING, consuming_stamp=rc.ns_to_time(stamp[0])))
        for k in range(1, 5):
            assert deliver(k, lambda: all(whole[k] in observations[g] and (c, stamp[k] + i) in masks[g]
                                          for g in graphs for i, c in enumerate(CAMERAS))), logs()

        for k in range(5):
            a, b = observations["sep"][whole[k]], observations["comp"][whole[k]]
            b.header.stamp = a.header.stamp  # the assembly time is each node's own
            assert not any(a.camera_stale) and not any(a.joint_source_stale)
            assert a == b, f"set {k}: the Observations differ in {_differing(a, b)}"
        changed = 0
        for k in range(1, 5):
            for i, c in enumerate(CAMERAS):
                a, b = masks["sep"][(c, stamp[k] + i)], masks["comp"][(c, stamp[k] + i)]
                assert a == b, f"set {k} camera {c}: the ChangeMasks differ"
                assert rc.time_to_ns(a.reference_stamp) == stamp[0] + i
                changed += sum(a.changed)
        assert changed > 0  # the masks are not trivially empty
        for p in procs:
            assert p.alive(), logs()
    finally:
        codes = [p.stop() for p in procs]
    assert codes == [0, 0, 0], logs()
