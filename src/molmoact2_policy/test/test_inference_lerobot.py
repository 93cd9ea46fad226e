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


def _saved_policy_dir(backend, out, image_keys=None):
    """A LeRobot policy directory as save_pretrained writes it; ``image_keys`` rewrites the config's."""
    import json

    backend.policy.save_pretrained(str(out))
    backend.pre.save_pretrained(str(out))
    backend.post.save_pretrained(str(out))
    if image_keys is not None:
        cfg = json.loads((out / "config.json").read_text())
        cfg["image_keys"] = list(image_keys)
        (out / "config.json").write_text(json.dumps(cfg))
    return out


def _vit_input(hf_model, call):
    """The pixels (crops in camera order) the model's vision backbone is given during ``call()``: the
    tiny checkpoint's chunk barely depends on the images, so they are compared where the model takes them."""
    seen = []
    hook = hf_model.model.vision_backbone.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().float().cpu().numpy().copy()))
    try:
        call()
    finally:
        hook.remove()
    assert len(seen) == 1
    return seen[0]


def test_lerobot_backend_gives_each_image_to_the_image_key_of_its_name(lerobot_backend, tiny_checkpoint_dir, tmp_path):
    """A fine-tune whose config lists no image_keys: the images still go under the keys of their
    camera names (top image -> observation.images.top), never zipped with the keys sorted
    alphabetically (which put the top image under observation.images.left)."""
    from molmoact2_policy.core.backends import PolicyRequest, make_backend

    hf = make_backend("hf", checkpoint=str(tiny_checkpoint_dir))
    want = _vit_input(hf.model, lambda: hf.predict(_request()))
    loaded = make_backend("lerobot", checkpoint=str(_saved_policy_dir(lerobot_backend, tmp_path / "ft", image_keys=[])))
    got = _vit_input(loaded.policy.model, lambda: loaded.predict(_request()))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the same images under the same names, in another order: the model sees the same thing
    r = _request()
    shuffled = PolicyRequest(images=[r.images[2], r.images[0], r.images[1]], state=r.state, instruction=r.instruction,
                             norm_tag=r.norm_tag, camera_names=["right", "top", "left"], seed=r.seed)
    np.testing.assert_allclose(_vit_input(loaded.policy.model, lambda: loaded.predict(shuffled)), want, atol=1e-5)
    assert set(loaded.info().camera_keys) == {f"observation.images.{c}" for c in ("top", "left", "right")}


def test_lerobot_backend_refuses_camera_name_mismatch_naming_both_sides(lerobot_backend, tiny_checkpoint_dir, tmp_path):
    from molmoact2_policy.core.backends import BackendError, PolicyRequest, make_backend

    both_sides = ("camera name mismatch: embodiment cameras top, left, wrist vs checkpoint 'ft' image keys "
                  "observation.images.top, observation.images.left, observation.images.right")
    ft = _saved_policy_dir(lerobot_backend, tmp_path / "ft")
    with pytest.raises(BackendError, match=both_sides):
        make_backend("lerobot", checkpoint=str(ft), camera_names=["top", "left", "wrist"])
    # a request naming a camera the policy has no key for is refused the same way
    r = _request()
    bad = PolicyRequest(images=r.images, state=r.state, instruction=r.instruction, norm_tag=r.norm_tag,
                        camera_names=["top", "left", "wrist"], seed=r.seed)
    with pytest.raises(BackendError, match=both_sides):
        make_backend("lerobot", checkpoint=str(ft)).predict(bad)
    # an HF checkpoint: the embodiment cameras are matched to the norm tag's cameras by name
    with pytest.raises(BackendError, match="camera name mismatch: embodiment cameras top, left, wrist vs checkpoint "
                                           f"'{tiny_checkpoint_dir.name}' cameras top, left, right"):
        make_backend("lerobot", checkpoint=str(tiny_checkpoint_dir), norm_tag="yam_dual_molmoact2",
                     camera_names=["top", "left", "wrist"])
