"""The venv needs no system FFmpeg: every compiled library in it that links an FFmpeg library
(libavcodec, libavformat, ..., libswscale) finds it bundled inside the venv (PyAV's ``av.libs``),
and LeRobot's video decoding with the project's backend loads only that bundled FFmpeg.

Set-up used to apt-install Debian's libav* for torchcodec, and that step broke fresh machines
(``libavcodec-extra59`` and ``libavcodec59`` conflict). These tests hold on a machine with or
without the system FFmpeg libraries."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

FFMPEG_LIB = re.compile(r"^lib(avutil|avcodec|avformat|avdevice|avfilter|swscale|swresample|postproc)[.-]")
DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 1, 5, 15, 29
PT_LOAD, PT_DYNAMIC = 1, 2


def elf_dynamic(path: Path) -> tuple[list[str], list[str]] | None:
    """(DT_NEEDED names, RPATH/RUNPATH directories) of a 64-bit little-endian ELF shared object,
    read from its program headers; None for anything else."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        phdrs = f.read(phentsize * phnum)
        loads, dynamic = [], None
        for i in range(phnum):
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", phdrs, i * phentsize)
            if p_type == PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return [], []
        f.seek(dynamic[0])
        raw = f.read(dynamic[1])
        entries = [struct.unpack_from("<qQ", raw, o) for o in range(0, len(raw) - 15, 16)]
        strtab_vaddr = next((v for t, v in entries if t == DT_STRTAB), None)
        if strtab_vaddr is None:
            return [], []
        strtab = next((off + strtab_vaddr - va for va, off, size in loads if va <= strtab_vaddr < va + size), None)
        if strtab is None:
            return None

        def string(offset: int) -> str:
            f.seek(strtab + offset)
            return f.read(4096).split(b"\0", 1)[0].decode(errors="replace")

        needed = [string(v) for t, v in entries if t == DT_NEEDED]
        paths = [d for t, v in entries if t in (DT_RPATH, DT_RUNPATH) for d in string(v).split(":") if d]
        return needed, paths


def venv_libraries() -> list[Path]:
    site = Path(sysconfig.get_paths()["purelib"])
    return [p for p in site.rglob("*.so*") if p.is_file() and not p.is_symlink() and re.search(r"\.so(\.\d+)*$", p.name)]


def test_the_elf_reader_finds_pyavs_bundled_ffmpeg():
    """The reader itself: PyAV's extension modules need FFmpeg and find it in av.libs (PyAV is the
    one package that must link FFmpeg; without this the next test could pass by reading nothing)."""
    av = pytest.importorskip("av")
    found = []
    for so in Path(av.__file__).parent.rglob("*.so"):
        needed, paths = elf_dynamic(so)
        found += [n for n in needed if FFMPEG_LIB.match(n)]
        assert any("av.libs" in p for p in paths), (so, paths)
    assert any(n.startswith("libavcodec") for n in found), found


def test_no_library_in_the_venv_needs_the_system_ffmpeg():
    sys_prefix = Path(sys.prefix).resolve()
    offenders = []
    for so in venv_libraries():
        dyn = elf_dynamic(so)
        if dyn is None:
            continue
        needed, paths = dyn
        wanted = [n for n in needed if FFMPEG_LIB.match(n)]
        if not wanted:
            continue
        dirs = [so.parent] + [Path(p.replace("$ORIGIN", str(so.parent)).replace("${ORIGIN}", str(so.parent))) for p in paths]
        for name in wanted:
            if not any((d / name).exists() and sys_prefix in (d / name).resolve().parents for d in dirs):
                offenders.append(f"{so.relative_to(sys_prefix)} needs {name}")
    assert not offenders, "compiled libraries in the venv that need the system FFmpeg:\n" + "\n".join(offenders)


@pytest.mark.model
def test_dataset_videos_decode_with_the_ffmpeg_pyav_bundles(tmp_path):
    """LeRobot's own encoder and decoder, with the project's VIDEO_BACKEND, in a fresh process: the
    frames come back, and every FFmpeg library mapped into the process lies inside the venv."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import numpy as np
        from PIL import Image
        from lerobot.datasets.video_utils import decode_video_frames, encode_video_frames
        from molmoact2_policy.core.evaluation.export import VIDEO_BACKEND

        frames = Path({str(tmp_path / "frames")!r}); frames.mkdir()
        for i in range(10):
            img = np.zeros((48, 64, 3), np.uint8); img[:, :, 0] = 200; img[10:20, 4 * i:4 * i + 8, 1] = 255
            Image.fromarray(img).save(frames / f"frame-{{i:06d}}.png")
        video = Path({str(tmp_path / "v.mp4")!r})
        encode_video_frames(frames, video, fps=30)
        out = decode_video_frames(video, [0.0, 0.1, 0.2], tolerance_s=1e-3, backend=VIDEO_BACKEND)
        assert tuple(out.shape) == (3, 3, 48, 64), out.shape
        assert float(out[:, 0].mean()) > 0.6, float(out[:, 0].mean())
        mapped = {{line.split()[-1] for line in open("/proc/self/maps") if "/" in line}}
        for lib in sorted(mapped):
            print(lib)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    ffmpeg = [p for p in proc.stdout.split() if FFMPEG_LIB.match(Path(p).name)]
    assert ffmpeg, "no FFmpeg library was mapped: the video was not decoded by FFmpeg?"
    outside = [p for p in ffmpeg if Path(sys.prefix).resolve() not in Path(p).resolve().parents]
    assert not outside, f"FFmpeg libraries loaded from outside the venv: {outside}"
