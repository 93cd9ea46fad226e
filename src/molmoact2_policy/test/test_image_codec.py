"""image_codec: every wire encoding the camera node accepts converts to RGB8; bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_policy.core import image_codec as ic


def _rgb(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "8UC4"])
def test_colour_encodings_round_trip_exactly(enc):
    rgb = _rgb()
    data, step = ic.encode_raw(rgb, enc)
    out = ic.decode_raw(enc, data, 6, 8, step)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_bgr8_bytes_are_swapped_to_rgb():
    bgr = np.zeros((1, 2, 3), np.uint8)
    bgr[0, 0] = (10, 20, 30)  # B, G, R
    out = ic.decode_raw("bgr8", bgr.tobytes(), 1, 2)
    assert tuple(out[0, 0]) == (30, 20, 10)


def test_grayscale_mono8_is_replicated_to_three_channels():
    mono = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = ic.decode_raw("mono8", mono.tobytes(), 3, 4)
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], mono)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_keeps_top_eight_bits_in_either_byte_order(bigendian):
    vals = np.array([[0, 255, 256, 65535]], dtype=">u2" if bigendian else "<u2")
    out = ic.decode_raw("mono16", vals.tobytes(), 1, 4, is_bigendian=bigendian)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 255])


def test_row_padding_in_step_is_dropped():
    rgb = _rgb(3, 5)
    padded = np.zeros((3, 5 * 3 + 7), np.uint8)
    padded[:, :15] = rgb.reshape(3, 15)
    out = ic.decode_raw("rgb8", padded.tobytes(), 3, 5, step=22)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("enc,order", [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")])
def test_packed_yuv422_converts_like_opencv_in_ros_byte_order(enc, order):
    import cv2

    rgb = _rgb(4, 8, seed=3)
    data, step = ic.encode_raw(rgb, enc)
    assert step == 16
    packed = np.frombuffer(data, np.uint8).reshape(4, 8, 2)
    code = cv2.COLOR_YUV2RGB_UYVY if order == "uyvy" else cv2.COLOR_YUV2RGB_YUYV
    np.testing.assert_array_equal(ic.decode_raw(enc, data, 4, 8), cv2.cvtColor(packed, code))
    # and colours survive (chroma subsampling loses a little)
    grey = np.full((2, 4, 3), 128, np.uint8)
    d, _ = ic.encode_raw(grey, enc)
    assert np.abs(ic.decode_raw(enc, d, 2, 4).astype(int) - 128).max() <= 2


def test_uyvy_known_bytes_decode_to_white_and_black():
    # U Y0 V Y1: neutral chroma, Y=235 (white) then Y=16 (black) in BT.601 video range
    data = bytes([128, 235, 128, 16])
    out = ic.decode_raw("yuv422", data, 1, 2)
    assert out[0, 0].min() >= 250 and out[0, 1].max() <= 5


def test_unsupported_encoding_is_refused_with_its_name():
    with pytest.raises(ic.UnsupportedEncoding, match="bayer_rggb8"):
        ic.decode_raw("bayer_rggb8", b"\0" * 16, 4, 4)
    with pytest.raises(ic.UnsupportedEncoding, match="32FC1"):
        ic.decode_raw("32FC1", b"\0" * 64, 4, 4)


@pytest.mark.parametrize("h,w", [(0, 4), (4, 0), (0, 0)])
def test_zero_size_image_is_refused(h, w):
    with pytest.raises(ic.ImageCodecError, match="zero size"):
        ic.decode_raw("rgb8", b"", h, w)


def test_odd_width_yuv422_is_refused():
    with pytest.raises(ic.ImageCodecError, match="odd width"):
        ic.decode_raw("yuv422", b"\0" * 12, 2, 3)


def test_odd_resolution_rgb_converts():
    rgb = _rgb(7, 13)
    data, step = ic.encode_raw(rgb, "bgr8")
    np.testing.assert_array_equal(ic.decode_raw("bgr8", data, 7, 13, step), rgb)


def test_truncated_data_is_refused():
    with pytest.raises(ic.ImageCodecError, match="bytes of data"):
        ic.decode_raw("rgb8", b"\0" * 10, 2, 2)


def test_step_smaller_than_row_is_refused():
    with pytest.raises(ic.ImageCodecError, match="step"):
        ic.decode_raw("rgb8", b"\0" * 100, 2, 4, step=5)


def test_png_round_trip_is_lossless():
    rgb = _rgb(9, 11)
    out = ic.decode_compressed("png", ic.encode_compressed(rgb, "png"))
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_decodes_to_rgb_with_ros_format_string():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200  # red
    data = ic.encode_compressed(rgb, "jpeg", quality=95)
    out = ic.decode_compressed("rgb8; jpeg compressed bgr8", data)
    assert out.shape == (16, 16, 3)
    assert abs(int(out[8, 8, 0]) - 200) <= 4 and out[8, 8, 2] <= 4


def test_grayscale_and_16bit_png_convert():
    import cv2

    g = np.arange(20, dtype=np.uint8).reshape(4, 5)
    ok, enc = cv2.imencode(".png", g)
    out = ic.decode_compressed("png", enc.tobytes())
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[..., 1], g)
    g16 = (g.astype(np.uint16) << 8)
    ok, enc = cv2.imencode(".png", g16)
    np.testing.assert_array_equal(ic.decode_compressed("png", enc.tobytes())[..., 2], g)


def test_compressed_depth_and_garbage_are_refused():
    with pytest.raises(ic.UnsupportedEncoding, match="compressedDepth"):
        ic.decode_compressed("16UC1; compressedDepth png", b"\x89PNG")
    with pytest.raises(ic.UnsupportedEncoding, match="tiff"):
        ic.decode_compressed("tiff", b"xx")
    with pytest.raises(ic.ImageCodecError, match="could not be decoded"):
        ic.decode_compressed("jpeg", b"not a jpeg at all")
    with pytest.raises(ic.ImageCodecError, match="empty"):
        ic.decode_compressed("jpeg", b"")


def test_as_rgb8_refuses_floats_and_wrong_shapes():
    with pytest.raises(ic.ImageCodecError, match="uint8"):
        ic.as_rgb8(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ic.ImageCodecError, match="shape"):
        ic.as_rgb8(np.zeros((2, 2, 2), np.uint8))
    assert ic.as_rgb8(np.zeros((2, 3), np.uint8)).shape == (2, 3, 3)


def test_resize_stretch_to_embodiment_resolution():
    rgb = _rgb(480, 640)
    out = ic.resize_rgb(rgb, 320, 180)
    assert out.shape == (180, 320, 3)
    assert ic.resize_rgb(out, 320, 180) is out  # already the right size: untouched


def test_resize_letterbox_pads_and_crop_cuts_keeping_aspect():
    rgb = np.full((100, 200, 3), 255, np.uint8)
    lb = ic.resize_rgb(rgb, 100, 100, "letterbox")
    assert lb.shape == (100, 100, 3)
    assert lb[0, 50].max() == 0 and lb[50, 50].min() == 255 and lb[99, 50].max() == 0
    cr = ic.resize_rgb(rgb, 100, 100, "crop")
    assert cr.shape == (100, 100, 3) and cr.min() == 255
    with pytest.raises(ic.ImageCodecError, match="mode"):
        ic.resize_rgb(rgb, 10, 10, "fisheye")
