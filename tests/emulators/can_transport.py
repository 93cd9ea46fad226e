"""THE one transport substitution the CAN tests make: python-can's bus creation, socketcan -> virtual.

Why: i2rt's ``DMChainCanInterface`` (and its register tools) open
``can.interface.Bus(bustype="socketcan", channel=...)`` explicitly; these machines have no
``vcan`` kernel module, and python-can's ``virtual`` bus is the only in-memory CAN bus it ships
(it connects bus objects of one process by channel name).

What: while ``virtual_socketcan()`` is active, python-can resolves the interface name
``"socketcan"`` to its ``VirtualBus`` class (the entry in ``can.interfaces.BACKENDS`` that
``can.interface.Bus`` looks up on every creation). Nothing else changes: i2rt's driver code, its
threads, retries and checks run unmodified, and every frame it sends or receives crosses a real
python-can bus object, exactly the 8-byte frames a robot's socketcan bus would carry. The motor
emulator (``damiao_can``) opens its own virtual bus on the same channel, in the same process.

Channel names must contain "can" (i2rt branches on it): ``can_left``, ``can_right``.

Used only by tests, benchmarks and the test launcher; production code never imports it.
"""

from __future__ import annotations

import contextlib
import threading

import can
import can.interfaces

_VIRTUAL = ("can.interfaces.virtual", "VirtualBus")
_lock = threading.Lock()
_depth = 0
_saved = None


def install() -> None:
    """Make ``socketcan`` bus creation return a python-can ``virtual`` bus (re-entrant)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = can.interfaces.BACKENDS.get("socketcan")
            can.interfaces.BACKENDS["socketcan"] = _VIRTUAL
        _depth += 1


def uninstall() -> None:
    global _depth
    with _lock:
        if _depth == 0:
            return
        _depth -= 1
        if _depth == 0:
            if _saved is None:
                can.interfaces.BACKENDS.pop("socketcan", None)
            else:
                can.interfaces.BACKENDS["socketcan"] = _saved


def installed() -> bool:
    return can.interfaces.BACKENDS.get("socketcan") == _VIRTUAL


@contextlib.contextmanager
def virtual_socketcan():
    install()
    try:
        yield
    finally:
        uninstall()
