"""Depth-token visualisation: MolmoAct2-Think's rows x cols depth codes as a colour-mapped image
overlay and as a 3-D grid of bars in the camera's optical frame. ROS-free.

The optical frame follows REP 103's camera convention: x right, y down, z forward. The grid lies
on a plane ``distance`` metres in front of the camera, spanning the camera's horizontal field of
view (cells keep the image's aspect ratio); each cell is a bar whose height (towards the camera,
along -z) and colour grow with the code, so near/far structure is seen in 3-D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class DepthVizError(ValueError):
    """Depth tokens or images the visualisation refuses."""


def _lut() -> np.ndarray:
    """A 256-entry perceptual colour map (OpenCV's TURBO), RGB uint8."""
    import cv2

    return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1].copy()


_LUT = None


def codes_to_grid(codes, rows: int, cols: int, num_codes: int) -> np.ndarray:
    arr = np.asarray(codes, dtype=np.int64).reshape(-1)
    if rows <= 0 or cols <= 0 or arr.size != rows * cols:
        raise DepthVizError(f"depth tokens: {arr.size} codes for a {rows}x{cols} grid")
    if num_codes <= 1:
        raise DepthVizError(f"depth tokens: num_codes must be > 1, got {num_codes}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_codes):
        raise DepthVizError(f"depth tokens: codes must be in [0, {num_codes}), got [{arr.min()}, {arr.max()}]")
    return arr.reshape(rows, cols)


def colour_codes(grid: np.ndarray, num_codes: int) -> np.ndarray:
    """(rows, cols) codes -> (rows, cols, 3) uint8 RGB."""
    global _LUT
    if _LUT is None:
        _LUT = _lut()
    idx = np.rint(np.asarray(grid, np.float64) * 255.0 / (num_codes - 1)).astype(np.int64)
    return _LUT[np.clip(idx, 0, 255)]


def overlay(image: np.ndarray | None, grid: np.ndarray, num_codes: int, refreshed: np.ndarray | None = None,
            alpha: float = 0.5, size: tuple[int, int] = (320, 320)) -> np.ndarray:
    """Codes colour-mapped, upsampled (nearest, so cells stay crisp) and blended over the camera
    image (or a black canvas of ``size`` = (w, h) when there is none); refreshed cells outlined
    in white."""
    rows, cols = grid.shape
    if image is None:
        image = np.zeros((size[1], size[0], 3), np.uint8)
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise DepthVizError(f"overlay needs an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    ys = np.minimum((np.arange(h) * rows) // h, rows - 1)
    xs = np.minimum((np.arange(w) * cols) // w, cols - 1)
    colours = colour_codes(grid, num_codes)[ys[:, None], xs[None, :]]
    out = ((1.0 - alpha) * img.astype(np.float32) + alpha * colours.astype(np.float32)).round().astype(np.uint8)
    if refreshed is not None:
        ref = np.asarray(refreshed, bool).reshape(rows, cols)
        yb = np.linspace(0, h, rows + 1).round().astype(int)
        xb = np.linspace(0, w, cols + 1).round().astype(int)
        for r, c in zip(*np.nonzero(ref)):
            y0, y1, x0, x1 = yb[r], yb[r + 1], xb[c], xb[c + 1]
            b = max(1, min(2, (y1 - y0) // 3, (x1 - x0) // 3))
            out[y0:y0 + b, x0:x1] = 255
            out[y1 - b:y1, x0:x1] = 255
            out[y0:y1, x0:x0 + b] = 255
            out[y0:y1, x1 - b:x1] = 255
    return out


@dataclass(frozen=True)
class Bar:
    index: int
    row: int
    col: int
    position: tuple[float, float, float]  # centre, optical frame (m)
    scale: tuple[float, float, float]  # x, y, z extent (m)
    colour: tuple[float, float, float, float]  # RGBA in 0..1
    code: int
    refreshed: bool


def grid_bars(grid: np.ndarray, num_codes: int, refreshed: np.ndarray | None = None, aspect: float = 16 / 9,
              distance: float = 1.0, hfov_deg: float = 70.0, max_height: float = 0.3, min_height: float = 0.005) -> list[Bar]:
    """One bar per cell in the optical frame (x right, y down, z forward); height along -z from the
    plane at ``distance``, proportional to the code; colour from the same map as the overlay;
    replayed (not refreshed) cells are drawn half transparent."""
    if not (distance > 0 and 0 < hfov_deg < 180 and max_height > 0 and aspect > 0):
        raise DepthVizError("grid_bars: distance, max_height, aspect must be > 0 and hfov in (0, 180)")
    rows, cols = grid.shape
    width = 2.0 * distance * math.tan(math.radians(hfov_deg) / 2.0)
    height = width / aspect
    cw, ch = width / cols, height / rows
    colours = colour_codes(grid, num_codes).astype(np.float64) / 255.0
    ref = np.ones((rows, cols), bool) if refreshed is None else np.asarray(refreshed, bool).reshape(rows, cols)
    bars = []
    for r in range(rows):
        for c in range(cols):
            code = int(grid[r, c])
            h = max(min_height, max_height * code / (num_codes - 1))
            x = -width / 2 + (c + 0.5) * cw
            y = -height / 2 + (r + 0.5) * ch
            z = distance - h / 2.0
            rgb = colours[r, c]
            bars.append(Bar(r * cols + c, r, c, (x, y, z), (cw * 0.9, ch * 0.9, h),
                            (float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0 if ref[r, c] else 0.5), code, bool(ref[r, c])))
    return bars
