"""The ``hf`` backend on the tiny checkpoint: loading, the transformers 5.5 trap, modes, Think, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.model


def _images(seed=0, n=3, h=90, w=160):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _request(images=None, seed=0, tag="yam_dual_molmoact2", dim=14, cameras=None):
    from molmoact2_policy.core.backends import PolicyRequest
    from molmoact2_policy.core.tiny_checkpoint import TAGS

    images = images or _images()
    cams = cameras or (TAGS[tag]["cameras"] if tag in TAGS else ["top", "left", "right"])[:len(images)]
    return PolicyRequest(images=images, state=np.linspace(-0.5, 0.5, dim).astype(np.float32),
                         instruction="Fold the towel.", norm_tag=tag, camera_names=list(cams), seed=seed)


@pytest.fixture(scope="module")
def hf_backend(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    return make_backend("hf", checkpoint=str(tiny_checkpoint_dir))


def test_strict_safetensors_reload_undoes_transformers_reinit(hf_backend, tiny_checkpoint_dir):
    """Every tensor of the loaded model equals the file: fails if the strict reload is removed."""
    import torch
    from safetensors.torch import load_file

    from molmoact2_policy.core.backends.hf import load_hf_model

    saved = load_file(str(tiny_checkpoint_dir / "model.safetensors"))
    loaded = hf_backend.model.state_dict()
    assert set(saved) == set(loaded)
    differing = [k for k in saved if not torch.equal(saved[k], loaded[k])]
    assert differing == []
    # The trap is real under transformers 5.5: from_pretrained alone re-initialises tensors.
    raw = load_hf_model(tiny_checkpoint_dir, repair_reinit=False).state_dict()
    assert [k for k in saved if not torch.equal(saved[k], raw[k])], "from_pretrained no longer re-initialises"


@pytest.mark.parametrize("missing", ["norm_stats.json", "model.safetensors", "processor_config.json", "config.json"])
def test_incomplete_checkpoint_is_refused_naming_the_missing_file(tiny_checkpoint_dir, tmp_path, missing):
    from molmoact2_policy.core.backends import CheckpointError, make_backend

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint_dir, ckpt)
    (ckpt / missing).unlink()
    with pytest.raises(CheckpointError, match=missing.replace(".", r"\.")):
        make_backend("hf", checkpoint=str(ckpt))


def test_missing_checkpoint_directory_is_refused(tmp_path):
    from molmoact2_policy.core.backends import CheckpointError, make_backend

    with pytest.raises(CheckpointError, match="does not exist"):
        make_backend("hf", checkpoint=str(tmp_path / "nope"))


def test_hf_backend_chunk_equals_direct_predict_action(hf_backend, tiny_checkpoint_dir):
    import torch

    req = _request(seed=7)
    res = hf_backend.predict(req)
    direct = hf_backend.model.predict_action(
        processor=hf_backend.processor, images=req.images, task=req.instruction, state=req.state,
        norm_tag=req.norm_tag, inference_action_mode="continuous", generator=torch.Generator().manual_seed(7),
        enable_cuda_graph=False)
    np.testing.assert_array_equal(res.actions, direct.actions[0].numpy())
    assert res.actions.dtype == np.float32 and res.actions.shape == (30, 14)
    assert set(res.timings) >= {"model"}


def test_same_seed_same_chunk_other_seed_other_chunk(hf_backend):
    a = hf_backend.predict(_request(seed=1)).actions
    b = hf_backend.predict(_request(seed=1)).actions
    c = hf_backend.predict(_request(seed=2)).actions
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_chunk_shape_follows_the_norm_tag(hf_backend):
    res = hf_backend.predict(_request(images=_images(n=2), tag="so100_so101_molmoact2", dim=6))
    assert res.actions.shape == (30, 6)
    res = hf_backend.predict(_request(images=_images(n=2), tag="franka_droid", dim=8))
    assert res.actions.shape == (15, 8)


def test_unknown_norm_tag_is_refused_naming_the_tags(hf_backend):
    from molmoact2_policy.core.backends import BackendError

    with pytest.raises(BackendError, match="not_a_tag.*yam_dual_molmoact2"):
        hf_backend.predict(_request(tag="not_a_tag"))


def test_bad_image_is_refused_naming_the_camera(hf_backend):
    from molmoact2_policy.core.backends import BackendError

    imgs = _images()
    imgs[1] = imgs[1].astype(np.float32)
    with pytest.raises(BackendError, match="camera 'left'"):
        hf_backend.predict(_request(images=imgs))


def test_discrete_mode_decodes_an_openfast_chunk(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    backend = make_backend("hf", checkpoint=str(tiny_checkpoint_dir), action_mode="discrete")
    res = backend.predict(_request())
    assert res.actions.shape == (30, 14)
    assert np.all(np.isfinite(res.actions))
    assert backend.info().mode == "discrete"


def test_discrete_mode_without_a_local_action_tokenizer_is_refused(tiny_checkpoint_dir, tmp_path):
    from molmoact2_policy.core.backends import CheckpointError, make_backend

    with pytest.raises(CheckpointError, match="OpenFAST"):
        make_backend("hf", checkpoint=str(tiny_checkpoint_dir), action_mode="discrete",
                     action_tokenizer=str(tmp_path / "missing"))


def test_think_on_a_checkpoint_without_depth_reasoning_is_refused(tiny_checkpoint_dir):
    from molmoact2_policy.core.backends import CheckpointError, make_backend

    with pytest.raises(CheckpointError, match="depth reasoning"):
        make_backend("hf", checkpoint=str(tiny_checkpoint_dir), think=True)


def test_think_depth_cache_is_carried_between_calls_and_reset(tiny_think_checkpoint_dir):
    from molmoact2_policy.core.backends import make_backend

    backend = make_backend("hf", checkpoint=str(tiny_think_checkpoint_dir), think=True)
    assert backend.info().mode == "think"
    imgs = _images(h=320, w=320)
    first = backend.predict(_request(images=imgs))
    assert first.depth_codes.shape == (100,) and first.depth_refreshed.all()
    assert (first.depth_rows, first.depth_cols) == (10, 10)
    same = backend.predict(_request(images=imgs))
    assert not same.depth_refreshed.any()  # nothing changed: every code replayed from the cache
    np.testing.assert_array_equal(same.depth_codes, first.depth_codes)
    changed = [im.copy() for im in imgs]
    changed[0][:64, :64] = 255 - changed[0][:64, :64]  # top-left 2x2 cells of the main image
    part = backend.predict(_request(images=changed))
    grid = part.depth_refreshed.reshape(10, 10)
    assert grid[:2, :2].all() and grid.sum() == 4
    backend.reset()
    again = backend.predict(_request(images=changed))
    assert again.depth_refreshed.all()


def test_unknown_backend_kind_is_refused():
    from molmoact2_policy.core.backends import BackendError, make_backend

    with pytest.raises(BackendError, match="unknown backend kind"):
        make_backend("onnx")


def test_hf_backend_runs_under_inference_mode(hf_backend):
    """Every module of the model runs under torch.inference_mode (not merely no_grad): seen by forward
    hooks on the real model during a real call."""
    import torch

    seen = []
    hooks = [m.register_forward_pre_hook(lambda _m, _a: seen.append(torch.is_inference_mode_enabled()))
             for m in hf_backend.model.modules()]
    try:
        hf_backend.predict(_request(seed=4))
    finally:
        for h in hooks:
            h.remove()
    assert seen and all(seen), f"{seen.count(False)} of {len(seen)} module calls ran outside inference_mode"
    assert not torch.is_inference_mode_enabled()


def test_hf_backend_picks_images_by_camera_name(hf_backend):
    """The same images under the same names in another order give the same chunk; names the norm tag
    does not have are refused naming both sides."""
    from molmoact2_policy.core.backends import BackendError

    def pixels(request):  # what the vision backbone gets (the tiny chunk barely depends on the images)
        seen = []
        hook = hf_backend.model.model.vision_backbone.register_forward_pre_hook(
            lambda _m, args: seen.append(args[0].detach().cpu().numpy().copy()))
        try:
            hf_backend.predict(request)
        finally:
            hook.remove()
        return seen[0]

    imgs = _images(seed=5)
    want = pixels(_request(images=imgs, seed=2))
    shuffled = pixels(_request(images=[imgs[2], imgs[0], imgs[1]], seed=2, cameras=["right", "top", "left"]))
    np.testing.assert_array_equal(shuffled, want)
    with pytest.raises(BackendError, match="camera name mismatch.*top, left, wrist.*top, left, right"):
        hf_backend.predict(_request(images=imgs, cameras=["top", "left", "wrist"]))
