"""rosbag2 writing/reading without rosbag2_py: standard metadata, embedded definitions, split
segments, crash safety, and damaged bags (broken records reported with positions)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import yaml

from molmoact2_policy.core.evaluation import synthetic
from molmoact2_policy.core.evaluation.bagio import BagError, BagReader, BagWriter, make_typestore
from molmoact2_policy.core.evaluation.recorder import Recorder

NS = 1_000_000_000


@pytest.fixture(scope="module")
def store():
    return make_typestore()


def _write_mixed(path, storage, store, n=20, split_seconds=60.0):
    w = BagWriter(path, storage, store, split_seconds=split_seconds)
    w.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    w.add_topic("/policy/action_chunk", "molmoact2_msgs/msg/ActionChunk")
    w.add_topic("/cameras/top/image_raw", "sensor_msgs/msg/Image")
    t0 = 1_700_000_000 * NS
    for i in range(n):
        t = t0 + i * NS // 10
        w.write("/joint_states", t, synthetic.joint_state_cdr(store, t, ["a", "b"], [0.1 * i, -0.1 * i]))
        w.write("/policy/action_chunk", t, synthetic.action_chunk_cdr(store, t, ["a", "b"], np.full((3, 2), i, float), 0.1, i + 1, "ckpt-x"))
        w.write("/cameras/top/image_raw", t, synthetic.image_cdr(store, t, np.full((8, 12, 3), i % 256, np.uint8), "rgb8"))
    w.close()
    return t0


def test_mcap_bag_reads_back_with_rosbags_and_the_mcap_reader(tmp_path, store):
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "run"
    _write_mixed(bag, "mcap", store)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["message_count"] == 60
    assert meta["relative_file_paths"] == ["run_0.mcap"]
    with Reader(bag) as r:
        assert r.message_count == 60
        assert {c.topic for c in r.connections} == {"/joint_states", "/policy/action_chunk", "/cameras/top/image_raw"}
        msgs = [(c.topic, store.deserialize_cdr(raw, c.msgtype)) for c, _, raw in r.messages()]
    chunk = [m for t, m in msgs if t == "/policy/action_chunk"][-1]
    assert chunk.model_id == "ckpt-x" and chunk.sequence == 20
    with open(bag / "run_0.mcap", "rb") as f:
        reader = make_reader(f)
        assert sum(1 for _ in reader.iter_messages()) == 60
        schemas = {s.name: s for s in reader.get_summary().schemas.values()}
    assert "molmoact2_msgs/msg/ActionChunk" in schemas
    assert b"string model_id" in schemas["molmoact2_msgs/msg/ActionChunk"].data


def test_our_interfaces_decode_from_the_bag_alone_without_molmoact2_msgs(tmp_path, store):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    bag = tmp_path / "run"
    _write_mixed(bag, "mcap", store, n=3)
    bare = get_typestore(Stores.EMPTY)  # knows no type at all
    with Reader(bag) as r:
        for c in r.connections:
            bare.register(get_types_from_msg(c.msgdef.data, c.msgtype))
        chunks = [bare.deserialize_cdr(raw, c.msgtype) for c, _, raw in r.messages() if c.topic == "/policy/action_chunk"]
    assert [c.sequence for c in chunks] == [1, 2, 3]
    assert list(chunks[-1].joint_names) == ["a", "b"]


def test_sqlite3_bag_reads_back_with_rosbags_and_our_reader(tmp_path, store):
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "run"
    _write_mixed(bag, "sqlite3", store, n=10)
    with Reader(bag) as r:
        assert r.message_count == 30
    reader = BagReader(bag, store)
    recs = list(reader.messages(["/joint_states"]))
    assert len(recs) == 10 and not reader.broken
    assert [round(float(reader.decode(x).position[0]), 3) for x in recs][:3] == [0.0, 0.1, 0.2]


def test_split_segments_are_listed_in_one_metadata_and_read_in_time_order(tmp_path, store):
    bag = tmp_path / "run"
    _write_mixed(bag, "mcap", store, n=30, split_seconds=1.0)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["relative_file_paths"] == ["run_0.mcap", "run_1.mcap", "run_2.mcap"]
    assert sum(f["message_count"] for f in meta["files"]) == 90
    stamps = [r.timestamp_ns for r in BagReader(bag, store).messages()]
    assert len(stamps) == 90 and stamps == sorted(stamps)


def test_writer_refuses_to_overwrite_an_existing_bag(tmp_path, store):
    (tmp_path / "run").mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "run", "mcap", store)


CRASHER = textwrap.dedent("""
    import sys, time
    from molmoact2_policy.core.evaluation import synthetic
    from molmoact2_policy.core.evaluation.bagio import BagWriter, make_typestore
    store = make_typestore()
    w = BagWriter(sys.argv[1], "{storage}", store, split_seconds=1.0, flush_seconds=0.05)
    w.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    t0 = 1_700_000_000 * 10**9
    for i in range(25):
        t = t0 + i * 10**8
        w.write("/joint_states", t, synthetic.joint_state_cdr(store, t, ["a"], [float(i)]))
    w.flush()
    print("flushed", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_crashed_recording_keeps_closed_segments_and_what_was_flushed(tmp_path, storage):
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER.format(storage=storage), str(bag)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "flushed"
    finally:
        proc.send_signal(signal.SIGKILL)  # no close(), no metadata finalisation
        proc.wait(10)
    with Reader(bag) as r:  # the standard reader opens the closed segments
        assert r.message_count == 20
    reader = BagReader(bag)
    values = [float(reader.decode(x).position[0]) for x in reader.messages()]
    assert values == [float(i) for i in range(25)]  # nothing flushed is lost
    assert any("not listed in metadata.yaml" in b.reason for b in reader.broken)


def test_truncated_mcap_reports_the_position_and_reads_the_rest(tmp_path, store):
    bag = tmp_path / "run"
    _write_mixed(bag, "mcap", store, n=40, split_seconds=1.0)
    f = bag / "run_2.mcap"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    reader = BagReader(bag, store)
    recs = list(reader.messages(["/joint_states"]))
    assert 20 <= len(recs) < 40
    assert all(reader.decode(r) is not None for r in recs)
    truncated = [b for b in reader.broken if b.file == "run_2.mcap"]
    assert truncated and truncated[0].position.startswith("byte ")


def test_corrupted_message_bytes_are_reported_and_the_rest_decodes(tmp_path, store):
    bag = tmp_path / "run"
    w = BagWriter(bag, "mcap", store)
    w.add_topic("/policy/action_chunk", "molmoact2_msgs/msg/ActionChunk")
    t0 = 1_700_000_000 * NS
    for i in range(10):
        w.write("/policy/action_chunk", t0 + i, synthetic.action_chunk_cdr(store, t0 + i, ["a"], np.zeros((2, 1)), 0.1, i + 1, "m"))
    w.close()
    f = bag / "run_0.mcap"
    data = bytearray(f.read_bytes())
    # the 5th message's joint_names length field -> absurd value
    payload = synthetic.action_chunk_cdr(store, t0 + 4, ["a"], np.zeros((2, 1)), 0.1, 5, "m")
    at = bytes(data).find(payload)
    assert at > 0
    data[at + 16: at + 20] = b"\xff\xff\xff\x7f"
    f.write_bytes(bytes(data))
    reader = BagReader(bag, store)
    decoded = [reader.decode(r) for r in reader.messages()]
    assert sum(d is not None for d in decoded) == 9
    assert len(reader.broken) == 1 and "byte" in reader.broken[0].position and "does not decode" in reader.broken[0].reason


def test_corrupted_sqlite_pages_are_reported_and_the_rest_is_read(tmp_path, store):
    bag = tmp_path / "run"
    _write_mixed(bag, "sqlite3", store, n=400)
    f = bag / "run_0.db3"
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 8192] = os.urandom(8192)
    f.write_bytes(bytes(data))
    reader = BagReader(bag, store)
    got = [r for r in reader.messages() if reader.decode(r) is not None]
    assert 0 < len(got) < 1200
    assert reader.broken


def test_recorder_never_blocks_and_counts_what_it_drops(tmp_path, store):
    w = BagWriter(tmp_path / "run", "mcap", store)
    rec = Recorder(w, max_queue_bytes=4096)
    rec.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    gate = threading.Event()
    orig = w.write
    w.write = lambda *a: (gate.wait(5), orig(*a))  # a disk that stalls
    data = synthetic.joint_state_cdr(store, 1, ["a"], [0.0])
    accepted = sum(rec.put("/joint_states", 1 + i, data) for i in range(1000))
    assert accepted < 1000 and rec.stats.dropped == 1000 - accepted
    gate.set()
    stats = rec.close()
    assert stats.written == accepted
    assert sum(1 for _ in BagReader(tmp_path / "run", store).messages()) == accepted


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_bags_from_other_mcap_writers_with_compressed_chunks_are_read(tmp_path, store, compression):
    """What `ros2 bag record` produces: ros2 profile, chunked, lz4/zstd compressed, summary."""
    from mcap.writer import CompressionType, Writer

    bag = tmp_path / "robot_bag"
    bag.mkdir()
    msgdef, _ = store.generate_msgdef("sensor_msgs/msg/JointState", ros_version=2)
    with open(bag / "robot_bag_0.mcap", "wb") as f:
        w = Writer(f, compression=CompressionType.LZ4 if compression == "lz4" else CompressionType.ZSTD, chunk_size=2048)
        w.start(profile="ros2", library="another-writer")
        sid = w.register_schema("sensor_msgs/msg/JointState", "ros2msg", msgdef.encode())
        cid = w.register_channel("/arm/joint_states", "cdr", sid)
        for i in range(200):
            t = 1_700_000_000 * NS + i * NS // 100
            w.add_message(cid, log_time=t, data=synthetic.joint_state_cdr(store, t, ["j"], [float(i)]), publish_time=t)
        w.finish()
    reader = BagReader(bag, store)  # no metadata.yaml: the file is found and scanned
    assert not reader.broken
    assert reader.topics()["/arm/joint_states"].msgtype == "sensor_msgs/msg/JointState"
    values = [float(reader.decode(r).position[0]) for r in reader.messages()]
    assert values == [float(i) for i in range(200)]


def _file_order_of(bag, storage):
    """(topic, timestamp) of every message in the order the storage files hold them."""
    import sqlite3

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    out = []
    for rel in meta["relative_file_paths"]:
        if storage == "mcap":
            from mcap.reader import make_reader

            with open(bag / rel, "rb") as f:
                out += [(c.topic, m.log_time) for _, c, m in make_reader(f).iter_messages(log_time_order=False)]
        else:
            con = sqlite3.connect(bag / rel)
            out += con.execute("SELECT t.name, m.timestamp FROM messages m JOIN topics t ON m.topic_id = t.id ORDER BY m.id").fetchall()
            con.close()
    return out


ADVERSARIAL = [(s, o, split) for s in ("mcap", "sqlite3") for o in ("per_topic_blocks", "reversed", "interleaved_chunks")
               for split in (60.0,)] + [("mcap", "per_topic_blocks", 1.0), ("sqlite3", "per_topic_blocks", 1.0)]


@pytest.mark.parametrize("storage,order,split", ADVERSARIAL,
                         ids=[f"{s}-{o}" + ("-split_files" if sp < 60 else "") for s, o, sp in ADVERSARIAL])
def test_bag_read_in_timestamp_order_whatever_the_file_order(tmp_path, store, storage, order, split):
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "run"
    spec = synthetic.SyntheticSpec(cameras={"front": "/cam/front", "wrist": "/cam/wrist"}, joint_topic="/joint_states",
                                   joint_names=["a", "b", "gripper"], seconds=2.0, camera_hz=15, joint_hz=50,
                                   chunk_topic="/policy/action_chunk", chunk_model_id="m", instruction_topic="/instruction",
                                   storage=storage, file_order=order, split_seconds=split)
    synthetic.write_synthetic_bag(bag, spec, store)
    in_file = _file_order_of(bag, storage)
    assert len(in_file) == 1 + 100 + 2 * 30 + 30
    assert [t for _, t in in_file] != sorted(t for _, t in in_file)  # the files really are out of order
    if split < 60:
        assert len(yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["relative_file_paths"]) > 1

    with Reader(bag) as r:  # the reference: rosbags' own reader
        expected = {(c.topic, t): bytes(raw) for c, t, raw in r.messages()}
    reader = BagReader(bag, store)
    recs = list(reader.messages())
    assert not reader.broken
    stamps = [r.timestamp_ns for r in recs]
    assert stamps == sorted(stamps)
    assert {(r.topic, r.timestamp_ns): r.data for r in recs} == expected and len(recs) == len(expected)
    joints = [float(reader.decode(r).position[0]) for r in recs if r.topic == "/joint_states"]
    t = [(r.timestamp_ns - spec.start_ns) / NS for r in recs if r.topic == "/joint_states"]
    np.testing.assert_allclose(joints, [synthetic.trajectory(x, 3)[0] for x in t])
    # a topic subset is in time order too, and a second pass gives the same
    sub = [r.timestamp_ns for r in reader.messages(["/cam/wrist", "/joint_states"])]
    assert sub == sorted(sub) and len(sub) == 130
    assert [r.timestamp_ns for r in reader.messages()] == stamps


def test_mcap_without_summary_is_indexed_by_a_first_pass_and_read_in_time_order(tmp_path, store):
    """A truncated-summary file (a crashed or streaming writer): the reader cannot use chunk
    indexes, indexes the chunks itself, and still yields time order."""
    bag = tmp_path / "run"
    spec = synthetic.SyntheticSpec(cameras={"front": "/cam/front"}, joint_topic="/joint_states", joint_names=["a", "b"],
                                   seconds=2.0, camera_hz=15, joint_hz=50, file_order="per_topic_blocks")
    synthetic.write_synthetic_bag(bag, spec, store)
    f = bag / "run_0.mcap"
    data = f.read_bytes()
    # cut the file at the data-end record: every chunk intact, no summary, no footer
    end = data.rfind(b"\x0f\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    assert end > 0
    f.write_bytes(data[:end])
    reader = BagReader(bag, store)
    recs = list(reader.messages())
    stamps = [r.timestamp_ns for r in recs]
    assert len(recs) == 130 and stamps == sorted(stamps)
    assert [b.reason for b in reader.broken] == [f"file ends without a footer (truncated at {end} bytes)"]


def test_unchunked_mcap_messages_are_read_in_time_order(tmp_path, store):
    from mcap.writer import Writer

    bag = tmp_path / "flat"
    bag.mkdir()
    msgdef, _ = store.generate_msgdef("sensor_msgs/msg/JointState", ros_version=2)
    order = list(range(100))[::-1]
    with open(bag / "flat_0.mcap", "wb") as f:
        w = Writer(f, use_chunking=False)
        w.start(profile="ros2", library="another-writer")
        sid = w.register_schema("sensor_msgs/msg/JointState", "ros2msg", msgdef.encode())
        cid = w.register_channel("/arm/joint_states", "cdr", sid)
        for i in order:
            t = 1_700_000_000 * NS + i * NS // 100
            w.add_message(cid, log_time=t, data=synthetic.joint_state_cdr(store, t, ["j"], [float(i)]), publish_time=t)
        w.finish()
    reader = BagReader(bag, store)
    values = [float(reader.decode(r).position[0]) for r in reader.messages()]
    assert values == [float(i) for i in range(100)] and not reader.broken


@pytest.mark.parametrize("order", ["per_topic_blocks", "reversed", "interleaved_chunks"])
def test_reading_an_out_of_order_bag_holds_only_the_chunks_that_overlap_in_time(tmp_path, store, order):
    """Bounded memory: of a bag of many chunks, the reader holds at once only those whose time
    ranges overlap the read position (per-topic blocks: about one per topic), never the bag."""
    bag = tmp_path / "run"
    spec = synthetic.SyntheticSpec(cameras={"front": "/cam/front"}, joint_topic="/joint_states", joint_names=["a", "b"],
                                   seconds=6.0, camera_hz=15, joint_hz=50, width=320, height=240, file_order=order)
    synthetic.write_synthetic_bag(bag, spec, store)  # 230 kB frames: a 1 MiB chunk holds 4
    reader = BagReader(bag, store)
    stamps = [r.timestamp_ns for r in reader.messages()]
    assert stamps == sorted(stamps) and len(stamps) == 390
    assert reader.read_stats["pieces"] >= 15
    assert reader.read_stats["max_open_pieces"] <= 3


def _blocks_sqlite_bag(path, store):
    spec = synthetic.SyntheticSpec(cameras={"front": "/cam/front"}, joint_topic="/joint_states", joint_names=["a", "b"],
                                   seconds=3.0, camera_hz=15, joint_hz=50, storage="sqlite3", file_order="per_topic_blocks")
    synthetic.write_synthetic_bag(path, spec, store)
    return path / f"{path.name}_0.db3"


def test_sqlite3_bag_without_a_timestamp_index_is_read_in_timestamp_order(tmp_path, store):
    import sqlite3

    db = _blocks_sqlite_bag(tmp_path / "run", store)
    con = sqlite3.connect(db)
    con.execute("DROP INDEX timestamp_idx")
    con.commit()
    con.close()
    reader = BagReader(tmp_path / "run", store)
    stamps = [r.timestamp_ns for r in reader.messages()]
    assert len(stamps) == 195 and stamps == sorted(stamps) and not reader.broken


def test_damaged_sqlite3_bag_in_any_file_order_is_salvaged_in_timestamp_order(tmp_path, store):
    db = _blocks_sqlite_bag(tmp_path / "run", store)
    data = bytearray(db.read_bytes())
    mid = len(data) // 3
    data[mid: mid + 8192] = np.random.default_rng(0).bytes(8192)
    db.write_bytes(bytes(data))
    reader = BagReader(tmp_path / "run", store)
    recs = list(reader.messages())
    assert reader.broken
    stamps = [r.timestamp_ns for r in recs]
    assert 0 < len(recs) < 195 and stamps == sorted(stamps)
    assert {r.topic for r in recs} >= {"/joint_states"}
