"""The offline tiny MolmoAct2 checkpoint: real HF layout, built without network, terminates by weights."""

from __future__ import annotations

import json
import logging
import socket

import numpy as np
import pytest

pytestmark = pytest.mark.model


def test_tiny_checkpoint_has_the_released_hf_layout(tiny_checkpoint_dir):
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
                 "tokenizer_config.json", "norm_stats.json", "action_tokenizer/tokenizer.json"):
        assert (tiny_checkpoint_dir / name).is_file(), name
    cfg = json.loads((tiny_checkpoint_dir / "config.json").read_text())
    assert cfg["model_type"] == "molmoact2"
    assert cfg["architectures"] == ["MolmoAct2ForConditionalGeneration"]
    meta = json.loads((tiny_checkpoint_dir / "tiny_checkpoint.json").read_text())
    assert meta["parameters"] < 1_000_000


def test_tiny_checkpoint_norm_stats_hold_the_released_norm_tags(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends.hf import read_tag_infos

    tags = read_tag_infos(tiny_checkpoint_dir / "norm_stats.json")
    assert {"franka_droid", "yam_dual_molmoact2", "so100_so101_molmoact2"} <= set(tags)
    assert (tags["franka_droid"].state_dim, tags["yam_dual_molmoact2"].state_dim, tags["so100_so101_molmoact2"].state_dim) == (8, 14, 6)
    assert tags["yam_dual_molmoact2"].action_space == "joint_position"
    assert tags["libero"].action_space == "end_effector"


def test_tiny_tokenizer_holds_every_molmoact2_special_token(tiny_checkpoint_dir):
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer.from_pretrained(str(tiny_checkpoint_dir))
    cfg = json.loads((tiny_checkpoint_dir / "config.json").read_text())
    specials = ["<action_output>", "<depth_output>", "<action_start>", "<action_end>", "<depth_start>",
                "<depth_end>", "<state_start>", "<state_end>", "<setup_start>", "<setup_end>",
                "<control_start>", "<control_end>", "<im_patch>", "<im_col>", "<im_start>", "<im_end>",
                "<low_res_im_start>", "<im_low>", "<frame_start>", "<frame_end>", "<state_0>", "<state_255>",
                "<depth_0>", "<depth_127>", "<action_0>"]
    unk = tok.unk_token_id
    for t in specials:
        tid = tok.convert_tokens_to_ids(t)
        assert tid is not None and tid != unk, t
        assert tok.encode(t) == [tid], t  # one token, never split
    assert tok.convert_tokens_to_ids("<depth_0>") == cfg["depth_token_start_id"]
    assert tok.convert_tokens_to_ids("<state_0>") == cfg["state_token_start_id"]
    assert tok.convert_tokens_to_ids("<im_patch>") == cfg["image_patch_id"]
    # image tokens live in the additional vocabulary, generated tokens in the LM head's range
    assert cfg["image_patch_id"] >= cfg["text_config"]["vocab_size"]
    assert cfg["depth_end_token_id"] < cfg["text_config"]["vocab_size"]


def test_tiny_checkpoint_builds_in_seconds_without_network(tmp_path, monkeypatch):
    from molmoact2_policy.core import tiny_checkpoint as tc

    def no_network(*args, **kwargs):
        raise AssertionError("the tiny checkpoint builder tried to open a network socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    out = tc.build_tiny_checkpoint(tmp_path / "ckpt", think=True)
    assert all((out / f).is_file() for f in tc.REQUIRED_FILES)
    assert json.loads((out / "config.json").read_text())["enable_depth_reasoning"] is True


def test_tiny_checkpoint_console_script_is_registered():
    import re
    from pathlib import Path

    setup = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    assert re.search(r"molmoact2-build-tiny-checkpoint\s*=\s*molmoact2_policy\.core\.tiny_checkpoint:main", setup)


def test_tiny_model_generation_terminates_by_its_weights_not_hooks(tiny_checkpoint_dir, tiny_think_checkpoint_dir, caplog):
    """Think emits 100 codes then <depth_end>; discrete emits a decodable OpenFAST span then EOS."""
    from molmoact2_policy.core.backends.hf import HfBackend
    from molmoact2_policy.core.backends import PolicyRequest

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(3)]
    req = PolicyRequest(images=images, state=np.zeros(14, np.float32), instruction="fold the towel",
                        norm_tag="yam_dual_molmoact2", seed=0)
    think = HfBackend(str(tiny_think_checkpoint_dir), think=True)
    discrete = HfBackend(str(tiny_checkpoint_dir), action_mode="discrete")
    for backend in (think, discrete):
        for module in backend.model.modules():
            assert not module._forward_hooks and not module._forward_pre_hooks
    res = think.predict(req)
    assert res.depth_codes.shape == (100,) and res.depth_codes.max() < 128
    with caplog.at_level(logging.WARNING):
        res = discrete.predict(req)
    assert res.actions.shape == (30, 14)
    assert not [r for r in caplog.records if "Error decoding tokens" in r.getMessage()]
