"""Seed a new venv with another venv's non-ROS distributions, as hard links, before pip runs.

The Jazzy and Kilted venvs hold the same model stack (torch with its CUDA libraries, lerobot,
MuJoCo: about 6 GB); only the ROS wheels differ. Two full copies did not fit on a CI machine with
a smaller disk. Every distribution of the donor venv that is not a ROS wheel (``ros-*``) is linked
file by file from its RECORD into the new venv, so pip then finds it installed at the required
version and installs only what differs: the other distro's ROS wheels. Hard links share the
bytes; pip never edits an installed file in place (it unlinks and writes), so an upgrade or an
uninstall in one venv leaves the other untouched. Console scripts name their interpreter in the
shebang: those are copied with the new venv's interpreter. Where a link cannot be made (another
file system) the file is copied.

    python tools/seed_venv.py DONOR_VENV NEW_VENV
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

SITE = Path("lib") / "python3.12" / "site-packages"


def is_ros_wheel(dist_info: Path) -> bool:
    """The PyPI ROS wheels are all named ros-<package> or ros-<distro>-<package> (ros_... on disk)."""
    return dist_info.name.lower().startswith("ros_")


def record_paths(dist_info: Path) -> list[str]:
    with open(dist_info / "RECORD", newline="") as f:
        return [row[0] for row in csv.reader(f) if row]


def seed(donor: Path, new: Path) -> tuple[int, int, int]:
    """Link the donor's non-ROS distributions into ``new``; returns (distributions, linked, copied)."""
    donor, new = donor.resolve(), new.resolve()
    donor_site, new_site = donor / SITE, new / SITE
    if not donor_site.is_dir() or not new_site.is_dir():
        raise SystemExit(f"seed_venv: {donor_site} or {new_site} is not a venv's site-packages")
    old_shebang = f"#!{donor / 'bin'}/python".encode()
    new_shebang = f"#!{new / 'bin'}/python".encode()
    dists = linked = copied = 0
    for dist_info in sorted(donor_site.glob("*.dist-info")):
        if is_ros_wheel(dist_info) or not (dist_info / "RECORD").is_file() or dist_info.name.startswith("pip-"):
            continue  # the new venv's own pip stays
        dists += 1
        for rel in record_paths(dist_info):
            src = os.path.normpath(donor_site / rel)
            dst = os.path.normpath(new_site / rel)
            if not os.path.isfile(src) or os.path.lexists(dst) or "__pycache__" in rel:
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.dirname(src) == str(donor / "bin"):
                data = Path(src).read_bytes()
                if data.startswith(old_shebang):  # a console script: its own interpreter
                    Path(dst).write_bytes(new_shebang + data[len(old_shebang):])
                    shutil.copymode(src, dst)
                    copied += 1
                    continue
            try:
                os.link(src, dst)
                linked += 1
            except OSError:
                shutil.copy2(src, dst)
                copied += 1
    return dists, linked, copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    dists, linked, copied = seed(Path(argv[0]), Path(argv[1]))
    print(f"seed_venv: {dists} distributions from {argv[0]} ({linked} files linked, {copied} copied)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
