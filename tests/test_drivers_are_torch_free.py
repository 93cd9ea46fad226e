"""A robot PC that only runs drivers (the policy on a remote GPU server) never imports the model
stack: every module of molmoact2_drivers and molmoact2_common imports without torch/lerobot."""

from __future__ import annotations

import subprocess
import sys

from support.ros_harness import ROOT

PROBE = r"""
import importlib, pkgutil, sys
import molmoact2_common, molmoact2_drivers
heavy = ("torch", "lerobot", "transformers")
for pkg in (molmoact2_common, molmoact2_drivers):
    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(mod.name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
print("HEAVY:" + ",".join(loaded))
"""


def test_drivers_and_common_import_without_the_model_stack():
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("HEAVY:"))
    assert line == "HEAVY:", f"drivers-only modules pulled in the model stack: {line}"


def test_drivers_requirements_do_not_name_the_model_stack():
    import re

    names = set()
    for line in (ROOT / "requirements/drivers.txt").read_text().lower().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0])
    assert not names & {"torch", "lerobot", "transformers", "torchvision"}, names
