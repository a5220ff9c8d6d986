"""Real components for tests and benchmarks, installed as ``inspectd.testing`` so both import it the same way.

- ``journald``: a real systemd-journald in a private mount namespace (root);
- ``nspawn``: a Debian root booted with systemd-nspawn, for the unit file and the packages (root);
- ``arm64``: the emulated Raspberry Pi userland (QEMU user mode, cortex-a76).

The station never imports it; the Debian package leaves it out.
"""
