"""Rewrite the wheel builder's include paths in the ROS wheels' CMake exports, inside one venv.

The PyPI ROS wheels' ``*__rosidl_generator_pyExport.cmake`` files hard-code the build host's
``/opt/python/cp312-cp312/...`` Python and NumPy include directories; CMake refuses include
directories that do not exist, so ``colcon build`` of any interface package fails. This points
them at the venv's own Python and NumPy headers. It only writes below the venv's prefix and is
idempotent, so it runs after every install.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

BUILDER_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILDER_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_)?core/include"
)


def main() -> int:
    import numpy

    prefix = Path(sys.prefix)
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = 0
    for cmake_file in (prefix / "share").rglob("*.cmake"):
        if not cmake_file.is_file():
            continue
        text = cmake_file.read_text(errors="surrogateescape")
        if "/opt/python/" not in text:
            continue
        fixed = BUILDER_NUMPY_INCLUDE.sub(numpy_include, text)
        fixed = BUILDER_PYTHON_INCLUDE.sub(python_include, fixed)
        if fixed != text:
            cmake_file.write_text(fixed, errors="surrogateescape")
            changed += 1
    print(f"fix_ros_wheel_cmake: {changed} file(s) rewritten under {prefix / 'share'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
