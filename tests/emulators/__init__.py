"""Wire-level hardware emulators (test infrastructure).

- ``feetech_sts3215``: a bus of Feetech STS3215 servos behind a pseudo-terminal, speaking the
  real serial protocol (the SO-100/101 arms).
- ``damiao_can``: Damiao DM4340/DM4310 motors on python-can's ``virtual`` bus (the YAM arms).
- ``can_transport``: the one documented transport substitution the CAN tests make (python-can bus
  creation: ``socketcan`` -> ``virtual``), nothing else of the driver is replaced.
"""
