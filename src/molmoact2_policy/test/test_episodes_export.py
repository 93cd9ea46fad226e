"""A recorded, labelled session -> a LeRobot dataset of its labelled successes (the frames match
the bag frame by frame, each episode's instruction is its task), read back with LeRobotDataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from test_export_lerobot import SO101_JOINTS, _bag_reference, _check_frame_by_frame

from molmoact2_common.embodiment import config_root
from molmoact2_policy.core.episodes import EVENT_TOPIC, EpisodeManager
from molmoact2_policy.core.evaluation import synthetic
from molmoact2_policy.core.evaluation.bagio import BagWriter, make_typestore
from molmoact2_policy.core.evaluation.export import VIDEO_BACKEND, ExportConfig, ExportError, export_lerobot

pytestmark = [pytest.mark.model, pytest.mark.slow]
NS = 1_000_000_000
T0 = synthetic.SyntheticSpec.start_ns
CAMS = {"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"}


@pytest.fixture(scope="module")
def small_so101(tmp_path_factory):
    raw = yaml.safe_load((config_root() / "embodiments" / "so101.yaml").read_text())
    for cam in raw["cameras"]:
        cam["width"], cam["height"] = 64, 48
    path = tmp_path_factory.mktemp("emb") / "so101_small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class FakeTime:
    """The recording clock the manager reads, stepped by the script (the bag's timeline)."""

    def __init__(self):
        self.ns = T0

    def __call__(self):
        return self.ns


# (seconds after the start, action) -- a session as an operator drives it
SCRIPT = [
    (0.20, "start"), (1.20, "stop"), (1.25, "mark_success"),             # 1: success
    (1.40, "next_instruction"), (1.45, "start"), (2.00, "mark_failure"),   # 2: failure (stops it)
    (2.20, "start"), (2.80, "rerecord"),                                  # 3: discarded
    (2.90, "start"), (3.70, "stop"), (3.72, "mark_success"),             # 4: success
    (3.80, "start"), (4.10, "interrupt"),                                 # 5: Ctrl-C
]


def write_session(path, seconds=4.3, storage="mcap", drop_events=()):
    """Joint states (90 Hz), two cameras (30 Hz) and the episode manager's events, as the
    recorder writes them (events stamped with the recording clock). ``drop_events``: indexes of
    events left out (lost intermediate events)."""
    store = make_typestore()
    clock = FakeTime()
    events: list[tuple[int, str]] = []
    mgr = EpisodeManager(clock, lambda ev: events.append((clock.ns, json.dumps(ev))),
                         ["pick up the red block", "put it back"])
    for t, action in SCRIPT:
        clock.ns = T0 + int(t * NS)
        getattr(mgr, action)()
    events = [e for i, e in enumerate(events) if i not in drop_events]
    timeline = [(ts, 2, EVENT_TOPIC, text) for ts, text in events]
    timeline += [(T0 + int(i * NS / 90), 0, "/joint_states", None) for i in range(int(seconds * 90))]
    for k, topic in enumerate(CAMS.values()):
        timeline += [(T0 + int(i * NS / 30) + 1, 1 + k, topic, k) for i in range(int(seconds * 30))]
    timeline.sort(key=lambda e: (e[0], e[1]))
    with BagWriter(path, storage, store) as w:
        for topic in CAMS.values():
            w.add_topic(topic, "sensor_msgs/msg/Image")
        w.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        w.add_topic(EVENT_TOPIC, "std_msgs/msg/String")
        for ts, _, topic, what in timeline:
            t = (ts - T0) / NS
            if topic == EVENT_TOPIC:
                w.write(topic, ts, synthetic.string_cdr(store, what))
            elif topic == "/joint_states":
                w.write(topic, ts, synthetic.joint_state_cdr(store, ts, SO101_JOINTS, synthetic.trajectory(t, 6)))
            else:
                w.write(topic, ts, synthetic.image_cdr(store, ts, synthetic.scene(t, 64, 48, seed=what), frame_id=topic))
    return mgr


def _tasks(ds, summary):
    return [ds[ds.meta.episodes["dataset_from_index"][e["episode_index"]]]["task"] for e in summary["episodes"]]


def test_labelled_session_exports_its_successes_only_matching_the_bag_frame_by_frame(tmp_path, small_so101):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    bag = tmp_path / "session"
    mgr = write_session(bag)
    assert [e.outcome for e in mgr.episodes] == ["success", "failure", "discarded", "success", "interrupted"]
    summary = export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds"), units="wire", progress=False))
    labelled = {e["episode"]: e for e in summary["labelled_episodes"]}
    assert [labelled[n]["exported"] for n in range(1, 6)] == [True, False, False, True, False]
    assert len(summary["episodes"]) == 2
    ds = LeRobotDataset(summary["repo_id"], root=tmp_path / "ds", video_backend=VIDEO_BACKEND)
    assert ds.num_episodes == 2
    assert _tasks(ds, summary) == ["pick up the red block", "put it back"]
    step = summary["frame_period_ns"]
    for ep, n in zip(summary["episodes"], (1, 4)):  # every frame (and its action) inside its labelled episode
        start, stop = mgr.episodes[n - 1].start_ns, mgr.episodes[n - 1].stop_ns
        assert start <= ep["first_frame_ns"] and ep["first_frame_ns"] + ep["frames"] * step <= stop
        assert ep["frames"] >= int((stop - start) / step) - 2  # the episode, less the ticks at its edges
    assert _check_frame_by_frame(ds, summary, {str(bag): _bag_reference(bag)}, 0.2) == len(ds)


def test_a_run_of_frames_shorter_than_min_episode_frames_is_counted_not_written(tmp_path, small_so101):
    # a one-frame fragment (a gap split an episode) broke LeRobot's episode stats and the whole export
    bag = tmp_path / "session"
    write_session(bag)
    full = export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds"), progress=False))
    lengths = sorted(e["frames"] for e in full["episodes"])
    cut = export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds2"), progress=False,
                                      min_episode_frames=lengths[0] + 1))
    assert sorted(e["frames"] for e in cut["episodes"]) == lengths[1:]
    assert cut["bags"][0]["too_short_frames"] == lengths[0]
    assert cut["bags"][0]["frames"] == sum(lengths[1:])


def test_include_failures_keeps_the_failure_and_never_the_discarded_or_interrupted(tmp_path, small_so101):
    bag = tmp_path / "session"
    write_session(bag, storage="sqlite3")
    summary = export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds"), include_failures=True,
                                          progress=False))
    exported = [e["episode"] for e in summary["labelled_episodes"] if e["exported"]]
    assert exported == [1, 2, 4]
    assert [e["task"] for e in summary["episodes"]] == ["pick up the red block", "put it back", "put it back"]


def test_lost_intermediate_events_change_nothing_the_newest_event_carries_the_episode(tmp_path, small_so101):
    bag = tmp_path / "session"
    # events: 0 start1, 1 stop1, 2 success1, 3 start2, 4 failure2, ...: drop the start and stop of episode 1
    write_session(bag, drop_events=(0, 1))
    summary = export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds"), progress=False))
    assert [e["task"] for e in summary["episodes"]] == ["pick up the red block", "put it back"]


def test_a_crash_mid_episode_leaves_it_interrupted_and_the_completed_ones_exported(tmp_path, small_so101):
    """The bag ends during episode 5 (its last event is its start): never exported."""
    bag = tmp_path / "session"
    write_session(bag, drop_events=(11,))  # the 'interrupted' event never reached the bag
    summary = export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds"), progress=False))
    last = summary["labelled_episodes"][-1]
    assert last["episode"] == 5 and last["outcome"] == "interrupted" and not last["exported"]
    assert len(summary["episodes"]) == 2


def test_export_without_successes_says_so_and_episodes_all_ignores_the_labels(tmp_path, small_so101):
    bag = tmp_path / "session"
    write_session(bag)
    with pytest.raises(ExportError, match="no frame could be exported: the bags' labelled episodes hold no success"):
        export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds"), progress=False,
                                    episode_topic=EVENT_TOPIC, include_failures=False, max_state_age=1e-6))
    summary = export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "all"), episodes="all",
                                          instruction="anything", progress=False))
    assert "labelled_episodes" not in summary and summary["bags"][0]["frames"] > 100


def test_export_labelled_refuses_a_bag_without_episode_events(tmp_path, small_so101):
    spec = synthetic.SyntheticSpec(cameras=CAMS, joint_topic="/joint_states", joint_names=SO101_JOINTS, seconds=0.3,
                                   instruction_topic="/instruction")
    synthetic.write_synthetic_bag(tmp_path / "b", spec)
    with pytest.raises(ExportError, match="no episode events on '/episode/event'"):
        export_lerobot(ExportConfig([str(tmp_path / "b")], str(small_so101), str(tmp_path / "ds"), episodes="labelled",
                                    progress=False))


def test_export_command_line_include_failures(tmp_path, small_so101):
    bag = tmp_path / "session"
    write_session(bag, seconds=2.2)
    proc = subprocess.run([sys.executable, "-m", "molmoact2_policy.core.evaluation.cli", "export", str(bag),
                           "-e", str(small_so101), "-o", str(tmp_path / "ds"), "--include-failures", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [e["episode"] for e in summary["labelled_episodes"] if e["exported"]] == [1, 2]
    assert np.all([e["frames"] > 10 for e in summary["episodes"]])


def test_lab_flywheel_labelled_session_to_lerobot_train_to_the_lerobot_backend(tmp_path, small_so101, tiny_checkpoint_dir):
    """The README's workflow on the tiny checkpoint: a labelled session exported (model units),
    fine-tuned for 2 steps with LeRobot's own lerobot-train and the README's MolmoAct2 flags, and
    the saved fine-tune evaluated on the bag through our lerobot backend (what backend:=lerobot
    loads)."""
    bag = tmp_path / "session"
    write_session(bag)
    export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds"), repo_id="lab/so101_demo", progress=False))
    ck = str(tiny_checkpoint_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    train = [
        "lerobot-train", "--dataset.repo_id=lab/so101_demo", f"--dataset.root={tmp_path / 'ds'}", "--dataset.video_backend=pyav",
        "--policy.type=molmoact2", f"--policy.checkpoint_path={ck}", f"--policy.discrete_action_tokenizer={ck}/action_tokenizer",
        "--policy.norm_tag=so100_so101_molmoact2", "--policy.setup_type=so100 so101",
        "--policy.control_mode=absolute joint position",
        "--policy.image_keys=[observation.images.front,observation.images.wrist]", "--policy.normalize_gripper=true",
        "--policy.push_to_hub=false", "--policy.device=cpu", "--policy.model_dtype=float32",
        "--policy.enable_inference_cuda_graph=false", f"--output_dir={tmp_path / 'out'}", "--steps=2", "--batch_size=2",
        "--num_workers=0", "--save_freq=2", "--wandb.enable=false",
    ]
    proc = subprocess.run(train, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finetune = tmp_path / "out" / "checkpoints" / "last" / "pretrained_model"
    assert json.loads((finetune / "config.json").read_text())["type"] == "molmoact2"
    proc = subprocess.run([sys.executable, "-m", "molmoact2_policy.core.evaluation.cli", "evaluate", str(bag), "-e", str(small_so101),
                           "-b", "lerobot", "-c", str(finetune), "--device", "cpu", "-i", "pick up the red block",
                           "--max-observations", "3", "--no-plots", "--no-progress", "-o", str(tmp_path / "report")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "evaluated 3 observations" in proc.stdout, proc.stdout
