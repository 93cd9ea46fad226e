"""The ``lerobot`` backend: LeRobot's MolmoAct2Policy + processors, predict_action_chunk only."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.model


def _request(seed=3):
    from molmoact2_policy.core.backends import PolicyRequest

    rng = np.random.default_rng(0)
    return PolicyRequest(images=[rng.integers(0, 255, (72, 128, 3), dtype=np.uint8) for _ in range(3)],
                         state=np.linspace(-0.3, 0.3, 14).astype(np.float32), instruction="fold the towel",
                         norm_tag="yam_dual_molmoact2", camera_names=["top", "left", "right"], seed=seed)


@pytest.fixture(scope="module")
def lerobot_backend(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    return make_backend("lerobot", checkpoint=str(tiny_checkpoint_dir), norm_tag="yam_dual_molmoact2",
                        camera_names=["top", "left", "right"])


def test_lerobot_policy_chunk_equals_the_hf_predict_action(lerobot_backend, tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    hf = make_backend("hf", checkpoint=str(tiny_checkpoint_dir))
    got = lerobot_backend.predict(_request()).actions
    assert got.shape == (30, 14) and got.dtype == np.float32
    np.testing.assert_allclose(got, hf.predict(_request()).actions, atol=1e-5)


def test_lerobot_backend_never_calls_select_action(lerobot_backend, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("select_action asserts under real-time chunking: never call it")

    monkeypatch.setattr(lerobot_backend.policy, "select_action", refuse)
    assert lerobot_backend.predict(_request()).actions.shape == (30, 14)


def test_lerobot_backend_loads_a_saved_lerobot_policy_directory(lerobot_backend, tmp_path):
    from molmoact2_policy.core.backends import make_backend

    out = tmp_path / "finetune"
    lerobot_backend.policy.save_pretrained(str(out))
    lerobot_backend.pre.save_pretrained(str(out))
    lerobot_backend.post.save_pretrained(str(out))
    loaded = make_backend("lerobot", checkpoint=str(out))
    assert loaded.info().model_id == "finetune"
    np.testing.assert_allclose(loaded.predict(_request()).actions, lerobot_backend.predict(_request()).actions, atol=1e-5)


def test_lerobot_backend_refuses_an_unknown_norm_tag(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import BackendError, make_backend

    with pytest.raises(BackendError, match="nope"):
        make_backend("lerobot", checkpoint=str(tiny_checkpoint_dir), norm_tag="nope", camera_names=["a"])
