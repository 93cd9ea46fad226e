"""Test launcher: our driver node for a YAM arm, with the Damiao emulator in the same process.

python-can's virtual bus only connects bus objects of one process, so the emulated motors live
in the driver's process. This installs the one transport substitution (``can_transport``),
starts an emulator per channel, optionally schedules a fault, then runs the driver node's
``main()`` unchanged with the ROS arguments after ``--``:

    python tests/emulators/yam_driver_with_emulator.py --channel can_left [--overheat 3:4.0] -- --ros-args ...

``--overheat MOTOR:DELAY`` raises that motor's rotor temperature above its limit DELAY seconds
after the motors were first enabled.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulators.can_transport import install  # noqa: E402
from emulators.damiao_can import DamiaoBusEmulator  # noqa: E402


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser()
    ap.add_argument("--channel", action="append", default=[])
    ap.add_argument("--overheat", default="")
    args = ap.parse_args(argv[:split])
    install()
    emus = [DamiaoBusEmulator(ch) for ch in (args.channel or ["can_left"])]
    for e in emus:
        e.start()
    if args.overheat:
        motor, delay = args.overheat.split(":")

        def fault() -> None:
            emu = emus[0]
            while not emu.motors[int(motor)].enabled:
                time.sleep(0.01)
            time.sleep(float(delay))
            print(f"emulator: motor {motor} overheats", flush=True)
            emu.set_rotor_temperature(int(motor), 130.0)

        threading.Thread(target=fault, daemon=True).start()
    from molmoact2_drivers.nodes.driver_node import main as driver_main

    try:
        return driver_main([sys.argv[0]] + argv[split + 1:])
    finally:
        for e in emus:
            e.stop()


if __name__ == "__main__":
    raise SystemExit(main())
