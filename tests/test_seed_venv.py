"""tools/seed_venv.py: the second distro's venv borrows the model stack as hard links, never the ROS wheels."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("seed_venv", ROOT / "tools" / "seed_venv.py")
seed_venv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_venv)


def _install(venv: Path, dist: str, files: dict[str, bytes]) -> None:
    """A distribution as pip leaves it: its files and a RECORD listing them (paths relative to site-packages)."""
    site = venv / seed_venv.SITE
    info = site / f"{dist}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Name: {dist}\n")
    rows = [f"{dist}.dist-info/METADATA,,", f"{dist}.dist-info/RECORD,,"]
    for rel, data in files.items():
        path = Path(os.path.normpath(site / rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(f"{rel},,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def _venv(tmp_path: Path, name: str) -> Path:
    venv = tmp_path / name
    (venv / seed_venv.SITE).mkdir(parents=True)
    (venv / "bin").mkdir()
    return venv


def test_model_stack_is_hard_linked_and_ros_wheels_are_left_to_pip(tmp_path):
    donor, new = _venv(tmp_path, ".venv-jazzy"), _venv(tmp_path, ".venv-kilted")
    _install(donor, "torch-2.11.0", {"torch/__init__.py": b"x = 1\n", "torch/lib/libtorch.so": b"\x7fELF"})
    _install(donor, "ros_rclpy-7.1.6", {"rclpy/__init__.py": b"jazzy\n"})
    _install(donor, "ros_jazzy_rclpy-7.1.6", {})

    dists, linked, _ = seed_venv.seed(donor, new)

    site = new / seed_venv.SITE
    assert dists == 1
    assert (site / "torch/lib/libtorch.so").stat().st_ino == (donor / seed_venv.SITE / "torch/lib/libtorch.so").stat().st_ino
    assert (site / "torch-2.11.0.dist-info/RECORD").is_file() and linked == 4
    assert not (site / "rclpy").exists() and not list(site.glob("ros_*"))


def test_console_scripts_name_the_new_venvs_interpreter(tmp_path):
    donor, new = _venv(tmp_path, ".venv-jazzy"), _venv(tmp_path, ".venv-kilted")
    script = f"#!{donor.resolve()}/bin/python\nimport sys\n".encode()
    _install(donor, "lerobot-0.6.1", {"lerobot/__init__.py": b"", "../../../bin/lerobot-train": script})
    os.chmod(donor / "bin/lerobot-train", 0o755)

    seed_venv.seed(donor, new)

    copied = new / "bin/lerobot-train"
    assert copied.read_bytes() == f"#!{new.resolve()}/bin/python\nimport sys\n".encode()
    assert os.access(copied, os.X_OK)
    assert (donor / "bin/lerobot-train").read_bytes() == script  # the donor's own is untouched


def test_uninstalling_from_the_seeded_venv_leaves_the_donor_intact(tmp_path):
    donor, new = _venv(tmp_path, ".venv-jazzy"), _venv(tmp_path, ".venv-kilted")
    _install(donor, "numpy-2.2.6", {"numpy/__init__.py": b"v = 2\n"})
    seed_venv.seed(donor, new)

    (new / seed_venv.SITE / "numpy/__init__.py").unlink()  # what pip uninstall does

    assert (donor / seed_venv.SITE / "numpy/__init__.py").read_bytes() == b"v = 2\n"


def test_files_already_in_the_new_venv_are_kept(tmp_path):
    donor, new = _venv(tmp_path, ".venv-jazzy"), _venv(tmp_path, ".venv-kilted")
    _install(donor, "six-1.17.0", {"six.py": b"donor\n"})
    (new / seed_venv.SITE / "six.py").write_bytes(b"own\n")

    seed_venv.seed(donor, new)

    assert (new / seed_venv.SITE / "six.py").read_bytes() == b"own\n"
