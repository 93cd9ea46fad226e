"""MolmoAct2-Think's depth-change mask (eq. 6), exactly as the MolmoAct2 code applies it.

    m_i = 1[cos(x_t,i, x_ref,i) < 0.996]

The rule as lerobot 0.6.1's ``molmoact2_hf_model`` computes it (``_compute_depth_update_mask``):
the uint8 RGB image is resized with PIL's bilinear filter to (grid*32) x (grid*32) (skipped when
already that size), cut into a grid x grid raster of 32x32 patches, each patch flattened in
(row, column, channel) order as float32; cosine similarity = dot / (|a| |b| + 1e-12) in float32,
1.0 where |a| |b| < 1e-8 (a zero-norm patch counts as unchanged), and a cell changed when the
similarity is strictly below the threshold.

This module gives the same float32 results bit for bit (near-threshold cells included) with
less work. Each frame is prepared once: the reference frame's values and norms are kept and reused
for every newer observation, so a mask resizes one frame where lerobot resizes two. The patch
sums skip lerobot's transposed copies and product arrays: numpy adds a 32x32x3 patch pairwise, in
blocks of 96 values that are exactly the patch's pixel rows, and a block's sum of uint8 products
is an exact integer in float32 whatever the order. So the per-row sums come from one einsum over
the frame in image order, and adding them neighbours-first as numpy does gives numpy's float32
sum exactly (checked once per patch size against ``np.sum``; other patch sizes, or a numpy that
adds otherwise, take the patch route). PIL's bilinear resize of the current frame stays: it is
most of the remaining time, and no other resize is bit-exact with it. ROS-free.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

PATCH_SIZE = 32  # lerobot: _DEPTH_REASONING_PATCH_SIZE
THRESHOLD = 0.996  # lerobot: _DEPTH_REASONING_THRESHOLD
GRID = 10  # sqrt(num_depth_codes = 100)


class ChangeMaskError(ValueError):
    """An image or parameter the mask refuses."""


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ChangeMaskError(f"change mask needs an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    return arr


def _pil_resize(image: np.ndarray, tw: int, th: int) -> np.ndarray:
    from PIL import Image

    image = np.ascontiguousarray(image)
    # frombuffer shares the array's memory (no copy); the pixels PIL resamples are the same
    # as Image.fromarray's, so the result is identical to lerobot's resize.
    pil = Image.frombuffer("RGB", (image.shape[1], image.shape[0]), image, "raw", "RGB", 0, 1)
    return np.asarray(pil.resize((tw, th), Image.BILINEAR))


def _pairwise_split_is_halving(n: int, leaf: int) -> bool:
    """Whether numpy's pairwise summation of ``n`` contiguous float32 values (numpy's
    ``pairwise_sum``: blocks of at most 128 summed directly, longer runs split at
    ``n // 2`` rounded down to a multiple of 8) halves ``n`` exactly, level by level, down to
    blocks of ``leaf`` values."""
    while n > 128:
        half = n // 2
        if half % 8 or half * 2 != n:
            return False
        n = half
    return n == leaf


@dataclass(frozen=True)
class PreparedFrame:
    """A frame resized for the mask, as float32 values in image order, with its patches' norms
    (computed once)."""

    pixels: np.ndarray  # (rows*patch, cols*patch*3) float32, the resized frame's values
    norms: np.ndarray  # (rows, cols) float32
    rows: int
    cols: int
    patch: int

    def patches(self) -> np.ndarray:
        """(rows, cols, patch*patch*3) float32: each patch flattened in (row, column, channel)
        order, as lerobot cuts them (a copy)."""
        p = self.patch
        return np.ascontiguousarray(self.pixels.reshape(self.rows, p, self.cols, p * 3).transpose(0, 2, 1, 3)).reshape(
            self.rows, self.cols, -1)


def _row_sums(a: PreparedFrame, b: PreparedFrame) -> np.ndarray:
    """(rows, patch, cols) float32: per patch and pixel row, the sum of a*b over that row's
    patch*3 values. Exact: the values are integers 0..255, so every partial sum is an integer
    below 96 * 255**2 < 2**24, whatever order einsum adds them in."""
    rows, cols, p = a.rows, a.cols, a.patch
    return np.einsum("ij,ij->i", a.pixels.reshape(-1, p * 3), b.pixels.reshape(-1, p * 3)).reshape(rows, p, cols)


def _pairwise_over_rows(sums: np.ndarray) -> np.ndarray:
    """(rows, patch, cols) -> (rows, cols): the row sums added as numpy's pairwise summation adds
    a patch's blocks (neighbours first, then pairs of pairs), so the float32 result equals
    ``np.sum(patches_a * patches_b, axis=-1)`` bit for bit."""
    while sums.shape[1] > 1:
        sums = sums[:, 0::2] + sums[:, 1::2]
    return sums[:, 0]


class _ExactRowSums:
    """Whether the row-sum route reproduces numpy's own reduction for a patch size: numpy's
    pairwise split must land on whole pixel rows of a patch, and numpy must add the way
    ``_pairwise_over_rows`` assumes (checked once per patch size against ``np.sum`` on random
    frames; another numpy that adds differently falls back to the patch route)."""

    def __init__(self) -> None:
        self._known: dict[int, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, patch: int) -> bool:
        ok = self._known.get(patch)
        if ok is None:
            with self._lock:
                ok = self._known.get(patch)
                if ok is None:
                    ok = self._known[patch] = self._check(patch)
        return ok

    @staticmethod
    def _check(patch: int) -> bool:
        if not _pairwise_split_is_halving(patch * patch * 3, patch * 3):
            return False
        rng = np.random.default_rng(patch)
        for _ in range(4):
            a, b = (_prepare_values(rng.integers(0, 256, (2 * patch, 2 * patch, 3), dtype=np.uint8), 2, 2, patch)
                    for _ in range(2))
            want = np.sum(a.patches() * b.patches(), axis=-1)
            if not np.array_equal(_pairwise_over_rows(_row_sums(a, b)), want):
                return False
        return True


_exact_row_sums = _ExactRowSums()


def resize_for_mask(image: np.ndarray, rows: int = GRID, cols: int = GRID, patch: int = PATCH_SIZE) -> np.ndarray:
    """PIL bilinear resize to (rows*patch, cols*patch), skipped when already that size."""
    image = _check_image(image)
    th, tw = rows * patch, cols * patch
    if image.shape[0] == th and image.shape[1] == tw:
        return image
    return _pil_resize(image, tw, th)


def _prepare_values(resized: np.ndarray, rows: int, cols: int, patch: int) -> PreparedFrame:
    pixels = resized.reshape(rows * patch, cols * patch * 3).astype(np.float32)
    return PreparedFrame(pixels, np.empty((rows, cols), np.float32), rows, cols, patch)


def _dot(a: PreparedFrame, b: PreparedFrame) -> np.ndarray:
    """(rows, cols) float32 patch dot products, as lerobot's ``np.sum(a * b, axis=-1)``."""
    if _exact_row_sums(a.patch):
        return _pairwise_over_rows(_row_sums(a, b))
    pa = a.patches()
    return np.sum(pa * (pa if b is a else b.patches()), axis=-1)


def prepare(image: np.ndarray, rows: int = GRID, cols: int = GRID, patch: int = PATCH_SIZE) -> PreparedFrame:
    if rows <= 0 or cols <= 0 or patch <= 0:
        raise ChangeMaskError(f"grid {rows}x{cols} of {patch}px patches: all must be > 0")
    frame = _prepare_values(resize_for_mask(image, rows, cols, patch), rows, cols, patch)
    # lerobot's np.linalg.norm(patches, axis=-1) is sqrt(add.reduce(patches * patches)): the same sums
    np.sqrt(_dot(frame, frame), out=frame.norms)
    return frame


def similarity(current: PreparedFrame, reference: PreparedFrame) -> np.ndarray:
    """(rows, cols) float32 cosine similarity, 1.0 where a patch has zero norm."""
    if (current.rows, current.cols, current.patch) != (reference.rows, reference.cols, reference.patch):
        raise ChangeMaskError(f"grids differ: {current.rows}x{current.cols} of {current.patch} px vs "
                              f"{reference.rows}x{reference.cols} of {reference.patch} px")
    dot = _dot(current, reference)
    denom = current.norms * reference.norms
    return np.where(denom < 1e-8, 1.0, dot / (denom + 1e-12))


def changed_cells(sim: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """(rows, cols) bool: similarity strictly below the threshold (a Python float against the
    float32 similarity, as lerobot compares it)."""
    return np.asarray(sim < float(threshold), dtype=np.bool_)


def compute_change_mask(
    current: np.ndarray,
    reference: np.ndarray,
    rows: int = GRID,
    cols: int = GRID,
    threshold: float = THRESHOLD,
    patch: int = PATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, changed) of ``current`` against ``reference``, each (rows, cols)."""
    sim = similarity(prepare(current, rows, cols, patch), prepare(reference, rows, cols, patch))
    return sim, changed_cells(sim, threshold)


def overlay_changed_cells(image: np.ndarray, changed: np.ndarray, colour=(255, 40, 40), alpha: float = 0.45, border: int = 2) -> np.ndarray:
    """The camera image with changed cells tinted and outlined (for RViz)."""
    img = _check_image(image)
    changed = np.asarray(changed, dtype=bool)
    rows, cols = changed.shape
    h, w = img.shape[:2]
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    out = img.astype(np.float32)
    col = np.asarray(colour, np.float32)
    for r, c in zip(*np.nonzero(changed)):
        y0, y1, x0, x1 = ys[r], ys[r + 1], xs[c], xs[c + 1]
        out[y0:y1, x0:x1] = (1 - alpha) * out[y0:y1, x0:x1] + alpha * col
        b = max(1, min(border, (y1 - y0) // 2, (x1 - x0) // 2))
        out[y0 : y0 + b, x0:x1] = col
        out[y1 - b : y1, x0:x1] = col
        out[y0:y1, x0 : x0 + b] = col
        out[y0:y1, x1 - b : x1] = col
    # faint grid so unchanged cells are visible too
    out[ys[1:-1], :] = 0.7 * out[ys[1:-1], :] + 0.3 * 255
    out[:, xs[1:-1]] = 0.7 * out[:, xs[1:-1]] + 0.3 * 255
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class MaskResult:
    camera: str
    stamp_ns: int  # capture stamp of the frame the mask describes
    observation_stamp_ns: int  # the Observation's own stamp
    reference_stamp_ns: int  # capture stamp of the reference frame
    similarity: np.ndarray  # (rows, cols) float32
    changed: np.ndarray  # (rows, cols) bool
    image: np.ndarray  # the frame the mask describes


@dataclass
class _Entry:
    observation_stamp_ns: int
    capture_stamps_ns: dict[str, int]
    images: dict[str, np.ndarray]
    prepared: dict[str, PreparedFrame]


class ChangeMaskTracker:
    """Chooses the reference frame the way the model does and computes masks for newer frames.

    The model replaces its reference image with every frame it consumes, so the reference is
    the observation the policy consumed before the current one. Feed every observation with
    ``add_observation``; when the policy announces the observation it is consuming, call
    ``set_reference(stamp)``: that observation becomes the reference, and every buffered
    observation newer than it gets its mask (and so does each later one as it arrives), so the
    mask is ready before the policy's next step. The stamp may be the observation's own stamp or
    any of its cameras' capture stamps.
    """

    def __init__(self, cameras: list[str], rows: int = GRID, cols: int = GRID, threshold: float = THRESHOLD,
                 patch: int = PATCH_SIZE, history: int = 16) -> None:
        if not cameras:
            raise ChangeMaskError("no cameras to mask")
        if not 0.0 < float(threshold) <= 1.0:
            raise ChangeMaskError(f"threshold must be in (0, 1], got {threshold}")
        if rows <= 0 or cols <= 0 or patch <= 0 or history < 2:
            raise ChangeMaskError(f"grid {rows}x{cols}, patch {patch}, history {history}: must be > 0 (history >= 2)")
        self.cameras = list(cameras)
        self.rows, self.cols, self.patch = int(rows), int(cols), int(patch)
        self.threshold = float(threshold)
        self.history = int(history)
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._reference: _Entry | None = None
        self._done: set[int] = set()  # observation stamps masked against the current reference

    @property
    def reference_stamp_ns(self) -> int | None:
        return self._reference.observation_stamp_ns if self._reference else None

    def _prepared(self, e: _Entry, cam: str) -> PreparedFrame:
        p = e.prepared.get(cam)
        if p is None:
            p = prepare(e.images[cam], self.rows, self.cols, self.patch)
            e.prepared[cam] = p
        return p

    def _mask(self, e: _Entry) -> list[MaskResult]:
        ref = self._reference
        out = []
        for cam in self.cameras:
            if cam not in e.images or cam not in ref.images:
                continue
            sim = similarity(self._prepared(e, cam), self._prepared(ref, cam))
            out.append(MaskResult(cam, e.capture_stamps_ns[cam], e.observation_stamp_ns, ref.capture_stamps_ns[cam],
                                  sim, changed_cells(sim, self.threshold), e.images[cam]))
        self._done.add(e.observation_stamp_ns)
        # once masked, a frame's patches are only needed again if it becomes the reference
        return out

    def add_observation(self, observation_stamp_ns: int, images: dict[str, np.ndarray],
                        capture_stamps_ns: dict[str, int]) -> list[MaskResult]:
        """Buffer an observation; returns its masks when a reference older than it is set."""
        imgs = {c: _check_image(images[c]) for c in self.cameras if c in images}
        e = _Entry(int(observation_stamp_ns), {c: int(capture_stamps_ns[c]) for c in imgs}, imgs, {})
        self._entries[e.observation_stamp_ns] = e
        while len(self._entries) > self.history:
            self._entries.popitem(last=False)
        if self._reference is not None and e.observation_stamp_ns > self._reference.observation_stamp_ns:
            return self._mask(e)
        return []

    def find(self, stamp_ns: int) -> _Entry | None:
        stamp_ns = int(stamp_ns)
        e = self._entries.get(stamp_ns)
        if e is not None:
            return e
        for e in reversed(self._entries.values()):
            if stamp_ns in e.capture_stamps_ns.values():
                return e
        return None

    def set_reference(self, stamp_ns: int) -> list[MaskResult] | None:
        """Make the observation with this stamp the reference. Returns the masks of buffered
        newer observations, or None when no buffered observation has that stamp."""
        e = self.find(stamp_ns)
        if e is None:
            return None
        if self._reference is e:
            return []
        self._reference = e
        self._done = set()
        out: list[MaskResult] = []
        for other in list(self._entries.values()):
            if other.observation_stamp_ns > e.observation_stamp_ns:
                out.extend(self._mask(other))
        return out
