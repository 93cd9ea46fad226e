"""Summary of a closed-loop run from its bag: rates, real-time factor, latency per stage, change-mask
refresh fraction, chunks executed, safety events, and PNGs (camera views, change-mask overlay, depth
tokens, joint trajectories). The bag's log times are the recorder's clock: simulated time.

With several arm drivers (bimanual YAM: ``/left/...``, ``/right/...``) rates, chunks executed and
motion are reported per arm; the control rate is the slowest arm's, and the robot "moved" only when
every arm moved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message

from molmoact2_common.embodiment import Embodiment

from .core.evaluation.bagio import BagReader
from .ros_conversions import image_msg_to_rgb, time_to_ns

def get_message(msgtype: str):
    """'pkg/msg/Type' -> the generated class (rosidl_runtime_py is not on PyPI)."""
    import importlib

    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


LIMIT_TOLERANCE_RAD = 0.02  # physics may overshoot a commanded limit by a hair


def _pct(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=np.float64) * 1e3
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def _save_png(rgb: np.ndarray, path: Path, scale: int = 1) -> str:
    from PIL import Image as PILImage

    img = PILImage.fromarray(rgb)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), PILImage.NEAREST)
    img.save(path)
    return path.name


def summarise_run(bag: Path, emb: Embodiment, out: Path, real_time_factor: float, sim_seconds: float) -> dict:
    cam = emb.model.camera_order[0]
    cams = list(emb.model.camera_order)
    reader = BagReader(bag)
    topics = reader.topics()
    types = {}
    for name, info in topics.items():
        try:
            types[name] = get_message(info.msgtype)
        except (ImportError, AttributeError, ValueError):
            pass  # a type this process cannot decode is not summarised

    joints: list[tuple[float, list[str], np.ndarray]] = []
    commanded: list[tuple[float, list[str], np.ndarray]] = []
    commanded_per_topic: dict[str, int] = {}
    chunk_times, model_latency, capture_to_chunk, capture_to_obs, mask_latency = [], [], [], [], []
    refresh, depth_refresh = [], []
    statuses = {}
    events: set[str] = set()
    last_image = {}
    first_t = None
    for rec in reader.messages():
        t = rec.timestamp_ns * 1e-9
        first_t = first_t if first_t is not None else t
        topic = rec.topic
        if topic.endswith("/clock") or topic not in types:
            continue
        if rec.msgtype == "sensor_msgs/msg/Image" and not (any(topic.endswith(f"/{c}/image_raw") for c in cams)
                                                           or topic.endswith(f"/{cam}/overlay")):
            continue
        msg = deserialize_message(rec.data, types[topic])
        if rec.msgtype == "sensor_msgs/msg/JointState":
            if topic.endswith("commanded_joint_states"):
                commanded.append((t, list(msg.name), np.asarray(msg.position)))
                commanded_per_topic[topic] = commanded_per_topic.get(topic, 0) + 1
            elif not topic.startswith("/sim/"):
                joints.append((t, list(msg.name), np.asarray(msg.position)))
        elif rec.msgtype == "molmoact2_msgs/msg/ActionChunk":
            chunk_times.append(t)
            model_latency.append(msg.inference_latency)
            capture_to_chunk.append(t - time_to_ns(msg.header.stamp) * 1e-9)
        elif rec.msgtype == "molmoact2_msgs/msg/Observation":
            obs_t = time_to_ns(msg.header.stamp)
            capture_to_obs += [(obs_t - time_to_ns(s)) * 1e-9 for s in msg.capture_stamps]
        elif rec.msgtype == "molmoact2_msgs/msg/ChangeMask" and msg.camera == cam:
            refresh.append(float(np.mean(msg.changed)) if len(msg.changed) else 0.0)
            mask_latency.append(t - time_to_ns(msg.header.stamp) * 1e-9)
        elif rec.msgtype == "molmoact2_msgs/msg/DepthTokens":
            depth_refresh.append(float(np.mean(msg.refreshed)) if len(msg.refreshed) else 0.0)
        elif rec.msgtype == "molmoact2_msgs/msg/DriverStatus":
            statuses[topic] = msg
            if msg.last_event:
                events.add(msg.last_event)
        elif rec.msgtype == "sensor_msgs/msg/Image":
            last_image[topic] = msg

    span = max(sim_seconds, 1e-9)
    policy_rate = len(chunk_times) / span
    # per driver (each arm's commanded_joint_states); the robot's control rate is its slowest arm's
    control_rate_per_driver = {_driver_label(t, "/commanded_joint_states"): round(n / span, 2)
                               for t, n in sorted(commanded_per_topic.items())}
    control_rate = min(control_rate_per_driver.values()) if control_rate_per_driver else 0.0

    # joints: motion and limits, by name
    names = emb.joint_names
    moved = {}
    arms_moved = {}
    violations = []
    if joints:
        series = {n: [] for n in names}
        for _, jn, pos in joints:
            for n, p in zip(jn, pos):
                if n in series:
                    series[n].append(p)
        for arm in emb.arms:
            for n in arm.joints:
                vals = np.asarray(series[n])
                if len(vals) == 0:
                    continue
                moved[n] = float(vals.max() - vals.min())
                lo, hi = arm.position_limits[n]
                if vals.min() < lo - LIMIT_TOLERANCE_RAD or vals.max() > hi + LIMIT_TOLERANCE_RAD:
                    violations.append(f"{n} in [{vals.min():.3f}, {vals.max():.3f}] outside [{lo}, {hi}]")
            arms_moved[arm.name] = any(moved.get(n, 0.0) > 0.01 for n in arm.joints)

    safety = {}
    executed_per_driver = {}
    for topic, st in sorted(statuses.items()):
        executed_per_driver[st.arm or _driver_label(topic, "/driver_status")] = int(st.chunks_received - st.chunks_refused)
        for field in ("chunks_refused", "steps_dropped_late", "clamps_position", "clamps_velocity", "clamps_envelope",
                      "refusals_nonfinite", "refusals_workspace", "watchdog_holds", "heartbeat_losses"):
            safety[field] = safety.get(field, 0) + int(getattr(st, field))

    # a chunk counts as executed when every arm's driver took it
    executed = min(executed_per_driver.values()) if executed_per_driver else 0

    pngs = []
    for topic, msg in last_image.items():
        if "/sim/" in topic:
            continue  # the raw render; the camera node's converted frame is the one the policy saw
        kind = "change_mask" if "change_mask" in topic else "depth_tokens" if "depth_viz" in topic else "camera"
        which = next((c for c in cams if f"/{c}/" in topic), cam)
        pngs.append(_save_png(image_msg_to_rgb(msg), out / f"{kind}_{which}.png", scale=3))
    if joints:
        pngs.append(_plot_joints(joints, commanded, names, out / "joint_trajectories.png"))

    latency = {"camera_to_observation": _pct(capture_to_obs), "model_inference_wall": _pct(model_latency),
               "capture_to_chunk": _pct(capture_to_chunk), "observation_to_change_mask": _pct(mask_latency)}
    summary = {
        "robot": emb.name, "sim_seconds": round(sim_seconds, 2), "real_time_factor": round(real_time_factor, 3),
        "policy_rate_hz": round(policy_rate, 2), "control_rate_hz": round(control_rate, 2),
        "control_rate_per_driver_hz": control_rate_per_driver,
        "chunks_published": len(chunk_times), "chunks_executed": executed, "chunks_executed_per_driver": executed_per_driver,
        "change_mask_refresh_fraction": round(float(np.mean(refresh)), 4) if refresh else None,
        "depth_refresh_fraction": round(float(np.mean(depth_refresh)), 4) if depth_refresh else None,
        "latency": latency, "safety_counters": safety, "safety_events": _event_kinds(events),
        "joint_range_rad": {k: round(v, 4) for k, v in moved.items()},
        "arms_moved": arms_moved,
        "joints_moved": bool(arms_moved) and all(arms_moved.values()), "limit_violations": violations,
        "pngs": pngs, "bag": str(bag), "topics": {k: v.count for k, v in topics.items()},
    }
    summary["text"] = _text(summary)
    return summary


def _driver_label(topic: str, suffix: str) -> str:
    """'/left/commanded_joint_states' -> 'left'; '/commanded_joint_states' -> 'driver'."""
    ns = topic[: -len(suffix)] if topic.endswith(suffix) else topic
    return ns.strip("/").rsplit("/", 1)[-1] or "driver"


def _event_kinds(events: set[str]) -> dict[str, int]:
    """Driver events grouped by kind (numbers and stamps folded), with how many distinct ones."""
    import re

    kinds: dict[str, int] = {}
    for e in events:
        kind = re.sub(r"-?\d+(\.\d+)?", "#", e)
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def _plot_joints(joints, commanded, names, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.6 * n), sharex=True)
    axes = np.atleast_1d(axes)
    t0 = joints[0][0]
    for ax, name in zip(axes, names):
        for series, label, style in ((joints, "measured", "-"), (commanded, "commanded", "--")):
            ts = [t - t0 for t, jn, _ in series if name in jn]
            vs = [p[jn.index(name)] for _, jn, p in series if name in jn]
            if ts:
                ax.plot(ts, vs, style, label=label, linewidth=1)
        ax.set_ylabel(name, fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("simulated time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _text(s: dict) -> str:
    lat = s["latency"]
    rows = [f"  {k:<28} p50 {v.get('p50_ms', '-'):>8} ms   p99 {v.get('p99_ms', '-'):>8} ms   (n={v['n']})" for k, v in lat.items()]
    lines = [
        f"== closed loop in MuJoCo: {s['robot']}, {s['sim_seconds']} s simulated ==",
        f"  real-time factor            {s['real_time_factor']}",
        f"  policy rate                 {s['policy_rate_hz']} chunks / simulated s ({s['chunks_published']} published, {s['chunks_executed']} executed)",
        f"  control rate                {s['control_rate_hz']} commands / simulated s",
        *([f"  per arm                     control {s['control_rate_per_driver_hz']} /s, chunks executed "
           f"{s['chunks_executed_per_driver']}, moved {s['arms_moved']}"] if len(s["control_rate_per_driver_hz"]) > 1 else []),
        f"  change-mask refresh         {s['change_mask_refresh_fraction']}",
        f"  depth refresh (Think)       {s['depth_refresh_fraction']}",
        "  latency per stage:", *rows,
        f"  safety counters             {s['safety_counters']}",
        f"  safety events               {s['safety_events'] or 'none'}",
        f"  joint range (rad)           {s['joint_range_rad']}",
        f"  PNGs                        {', '.join(s['pngs'])}",
    ]
    return "\n".join(lines)
