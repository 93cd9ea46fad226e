"""Eq. (6) change mask: bit-exact with lerobot's own MolmoAct2 function, reference handling."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_policy.core import change_mask as cm

lerobot_mask = pytest.importorskip(
    "lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2"
)._compute_depth_update_mask

pytestmark = pytest.mark.model


def _lerobot(cur, prev):
    return lerobot_mask(cur, prev, num_depth_codes=100).reshape(10, 10)


def _near_threshold_pair(h, w, seed, iters=18):
    """A reference frame and a current frame whose cells are perturbed by per-cell noise scaled
    (by bisection on the similarity) so that the cells' similarities sit just above and just
    below 0.996."""
    rng = np.random.default_rng(seed)
    prev = rng.integers(30, 226, (h, w, 3)).astype(np.float64)
    noise = rng.normal(0, 1, (h, w, 3))
    ys = np.linspace(0, h, 11).round().astype(int)
    xs = np.linspace(0, w, 11).round().astype(int)
    target = 0.996 + rng.uniform(-4e-5, 4e-5, (10, 10))
    lo, hi = np.zeros((10, 10)), np.full((10, 10), 60.0)

    def make(amp):
        gain = np.repeat(np.repeat(amp, np.diff(ys), 0), np.diff(xs), 1)[..., None]
        return np.clip(np.rint(prev + gain * noise), 0, 255).astype(np.uint8)

    p8 = prev.astype(np.uint8)
    for _ in range(iters):
        mid = (lo + hi) / 2
        sim = cm.similarity(cm.prepare(make(mid)), cm.prepare(p8))
        too_similar = sim > target
        lo = np.where(too_similar, mid, lo)
        hi = np.where(too_similar, hi, mid)
    return make((lo + hi) / 2), p8


def _sims(cur, prev):
    return cm.similarity(cm.prepare(cur), cm.prepare(prev))


@pytest.mark.parametrize("shape", [(360, 640), (480, 640), (320, 320), (97, 211), (640, 360)])
def test_mask_equals_lerobot_on_near_threshold_changes(shape):
    cur, prev = _near_threshold_pair(*shape, seed=shape[0] + shape[1])
    sim, changed = cm.compute_change_mask(cur, prev)
    np.testing.assert_array_equal(changed, _lerobot(cur, prev))
    assert sim.dtype == np.float32
    # the pair really is near the threshold: both sides populated, some cells within 1e-3
    assert changed.any() and not changed.all()
    assert (np.abs(sim - 0.996) < 1e-4).sum() >= 50


def test_mask_equals_lerobot_across_many_random_near_threshold_pairs():
    near = 0
    for seed in range(6):
        cur, prev = _near_threshold_pair(360, 640, seed)
        sim, changed = cm.compute_change_mask(cur, prev)
        np.testing.assert_array_equal(changed, _lerobot(cur, prev))
        near += int((np.abs(sim - 0.996) < 2e-5).sum())
    assert near >= 100


def test_black_patches_count_as_unchanged_like_lerobot():
    rng = np.random.default_rng(7)
    prev = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    cur = prev.copy()
    cur[:72, :128] = 0  # current patch black: zero norm -> unchanged
    prev2 = prev.copy()
    prev2[288:, 512:] = 0  # reference patch black
    cur2 = cur.copy()
    cur2[288:, 512:] = 255
    for a, b in ((cur, prev), (cur2, prev2), (np.zeros_like(prev), prev), (np.zeros_like(prev), np.zeros_like(prev))):
        sim, changed = cm.compute_change_mask(a, b)
        np.testing.assert_array_equal(changed, _lerobot(a, b))
    sim, changed = cm.compute_change_mask(np.zeros_like(prev), prev)
    assert not changed.any() and (sim == 1.0).all()


def test_identical_frames_change_nothing_and_a_moved_object_changes_its_cells():
    rng = np.random.default_rng(3)
    prev = np.full((360, 640, 3), 128, np.uint8) + rng.integers(0, 20, (360, 640, 3), dtype=np.uint8)
    sim, changed = cm.compute_change_mask(prev, prev)
    assert not changed.any()
    cur = prev.copy()
    cur[0:72, 0:128] = [250, 10, 10]  # covers cells (0..1, 0..1) of the 10x10 grid
    sim, changed = cm.compute_change_mask(cur, prev)
    np.testing.assert_array_equal(changed, _lerobot(cur, prev))
    assert changed[0, 0] and changed[1, 1] and not changed[5, 5]


def test_threshold_is_strict_and_a_parameter():
    cur, prev = _near_threshold_pair(360, 640, 1)
    sim, _ = cm.compute_change_mask(cur, prev)
    t = float(np.sort(sim.reshape(-1))[50])
    changed = cm.changed_cells(sim, t)
    assert not changed[sim == np.float32(t)].any()  # equal to the threshold: unchanged
    assert changed.sum() == int((sim < np.float32(t)).sum())


def test_custom_grid_and_non_square_grid():
    cur, prev = _near_threshold_pair(360, 640, 2)
    sim, changed = cm.compute_change_mask(cur, prev, rows=4, cols=6)
    assert sim.shape == (4, 6) and changed.shape == (4, 6)
    # an 8x8 grid follows lerobot's rule for 64 depth codes
    sim8, changed8 = cm.compute_change_mask(cur, prev, rows=8, cols=8)
    np.testing.assert_array_equal(changed8.reshape(-1), lerobot_mask(cur, prev, num_depth_codes=64))


def test_bad_images_are_refused():
    with pytest.raises(cm.ChangeMaskError, match="uint8 RGB"):
        cm.prepare(np.zeros((10, 10), np.uint8))
    with pytest.raises(cm.ChangeMaskError, match="uint8 RGB"):
        cm.prepare(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(cm.ChangeMaskError, match="uint8 RGB"):
        cm.prepare(np.zeros((10, 10, 3), np.float32))


def test_overlay_highlights_only_changed_cells():
    img = np.full((100, 200, 3), 100, np.uint8)
    changed = np.zeros((10, 10), bool)
    changed[2, 3] = True
    out = cm.overlay_changed_cells(img, changed)
    assert out.shape == img.shape
    assert out[25, 70, 0] > 150  # inside cell (2, 3): tinted red
    assert tuple(out[75, 150]) == (100, 100, 100)  # an unchanged cell interior is untouched


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    out = []
    for k in range(n):
        f = base.copy()
        f[: 9 * (k + 1), :16] = 255 - f[: 9 * (k + 1), :16]  # a growing changed strip
        out.append(f)
    return out


def test_reference_is_the_observation_the_policy_consumed_before_the_current_one():
    frames = _frames(4)
    tr = cm.ChangeMaskTracker(["top"])
    assert tr.add_observation(1, {"top": frames[0]}, {"top": 11}) == []  # no reference yet
    tr.add_observation(2, {"top": frames[1]}, {"top": 12})
    out = tr.set_reference(1)  # the policy starts consuming observation 1
    assert [r.observation_stamp_ns for r in out] == [2]
    assert out[0].reference_stamp_ns == 11 and out[0].stamp_ns == 12
    np.testing.assert_array_equal(out[0].changed, cm.compute_change_mask(frames[1], frames[0])[1])
    (r3,) = tr.add_observation(3, {"top": frames[2]}, {"top": 13})  # newer: masked on arrival
    np.testing.assert_array_equal(r3.changed, cm.compute_change_mask(frames[2], frames[0])[1])
    # the policy consumes 3 next: its reference moves, no drift accumulates
    assert tr.set_reference(13) == []  # found by capture stamp; nothing newer buffered yet
    (r4,) = tr.add_observation(4, {"top": frames[3]}, {"top": 14})
    assert r4.reference_stamp_ns == 13
    np.testing.assert_array_equal(r4.changed, cm.compute_change_mask(frames[3], frames[2])[1])


def test_slow_drift_never_accumulates_against_an_old_reference():
    base = np.full((64, 64, 3), 100, np.uint8)
    tr = cm.ChangeMaskTracker(["c"])
    tr.add_observation(0, {"c": base}, {"c": 0})
    for k in range(1, 30):
        frame = np.clip(base.astype(int) + k * 3 * (np.arange(64)[None, :, None] > 32), 0, 255).astype(np.uint8)
        tr.set_reference(k - 1)
        (r,) = tr.add_observation(k, {"c": frame}, {"c": k})
        assert not r.changed.any()
    # against the first frame the drift is large
    assert cm.compute_change_mask(frame, base)[1].any()


def test_unknown_reference_stamp_returns_none_and_history_is_bounded():
    tr = cm.ChangeMaskTracker(["c"], history=3)
    for k in range(5):
        tr.add_observation(k, {"c": np.zeros((8, 8, 3), np.uint8)}, {"c": k})
    assert tr.set_reference(0) is None  # evicted
    assert tr.set_reference(4) == []


def test_tracker_parameters_are_validated():
    with pytest.raises(cm.ChangeMaskError):
        cm.ChangeMaskTracker([])
    with pytest.raises(cm.ChangeMaskError, match="threshold"):
        cm.ChangeMaskTracker(["a"], threshold=1.5)


def test_masks_stay_exact_across_interleaved_grid_sizes_and_threads():
    """Masks of interleaved grid sizes and of concurrent threads (the once-per-patch-size check of
    the row-sum route runs under a lock) still equal lerobot's function."""
    import threading

    pairs = [_near_threshold_pair(360, 640, 30 + k) for k in range(3)]
    want = [_lerobot(c, p) for c, p in pairs]
    want8 = [lerobot_mask(c, p, num_depth_codes=64) for c, p in pairs]
    errors = []

    def worker(k):
        c, p = pairs[k]
        for _ in range(8):
            if not np.array_equal(cm.compute_change_mask(c, p)[1], want[k]):
                errors.append((k, 10))
            if not np.array_equal(cm.compute_change_mask(c, p, rows=8, cols=8)[1].reshape(-1), want8[k]):
                errors.append((k, 8))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    # a prepared frame's values are its own
    a, b = cm.prepare(pairs[0][0]), cm.prepare(pairs[1][0])
    assert not np.shares_memory(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.pixels, cm.prepare(pairs[0][0]).pixels)


def _lerobot_float32_similarity(cur, prev, rows, cols, patch):
    """lerobot's _compute_depth_update_mask up to its similarity array, line for line, with the
    grid and patch size as arguments (lerobot fixes the patch at 32 and returns only the mask)."""
    from PIL import Image

    def resized(image):
        if image.shape[0] == rows * patch and image.shape[1] == cols * patch:
            return image
        return np.asarray(Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((cols * patch, rows * patch), Image.BILINEAR))

    def patches(image):
        return resized(image).astype(np.float32).reshape(rows, patch, cols, patch, 3).transpose(0, 2, 1, 3, 4).reshape(rows, cols, -1)

    a, b = patches(cur), patches(prev)
    dot = np.sum(a * b, axis=-1)
    denom = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(denom < 1e-8, 1.0, dot / (denom + 1e-12))


@pytest.mark.parametrize("patch", [32, 16, 24, 8])
def test_similarity_equals_lerobots_float32_operations_bit_for_bit(patch):
    """Not only the mask: every similarity value equals lerobot's float32 result, on full-range
    noise (patch sums far above 2**24, where float32 rounds) and near-threshold pairs; patch 32
    takes the row-sum route, the other sizes the patch route."""
    rng = np.random.default_rng(patch)
    pairs = [(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)),
             _near_threshold_pair(360, 640, patch), _near_threshold_pair(97, 211, patch + 1)]
    for cur, prev in pairs:
        got = cm.similarity(cm.prepare(cur, 10, 10, patch), cm.prepare(prev, 10, 10, patch))
        want = _lerobot_float32_similarity(cur, prev, 10, 10, patch)
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_the_row_sum_route_is_taken_exactly_where_numpys_pairwise_split_lands_on_pixel_rows():
    assert cm._exact_row_sums(32)  # 3072 -> ... -> 96 = one pixel row of a patch
    assert not cm._exact_row_sums(16)  # 768 -> 384 -> 192 -> 96 = two rows of 48
    assert not cm._exact_row_sums(24)  # 1728 -> ... -> 108, not a row of 72


def test_tracker_masks_against_a_cached_reference_equal_lerobots_function():
    """The tracker prepares the reference once and reuses it for every newer frame; each of
    those masks equals lerobot's function, which resizes both frames every call."""
    cams = ["top", "left", "right"]
    cur0, ref = _near_threshold_pair(360, 640, 21)
    rng = np.random.default_rng(0)
    currents = [cur0] + [np.clip(cur0.astype(int) + rng.integers(-1, 2, cur0.shape), 0, 255).astype(np.uint8)
                         for _ in range(3)]
    tr = cm.ChangeMaskTracker(cams)
    tr.add_observation(1, {c: ref for c in cams}, {c: 10 for c in cams})
    tr.set_reference(1)
    near = 0
    for k, cur in enumerate(currents):
        out = tr.add_observation(2 + k, {c: cur for c in cams}, {c: 20 + k for c in cams})
        assert [r.camera for r in out] == cams
        want = _lerobot(cur, ref)
        for r in out:
            np.testing.assert_array_equal(r.changed, want)
        near += int((np.abs(out[0].similarity - 0.996) < 1e-4).sum())
    assert near >= 50
