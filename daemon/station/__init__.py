"""The station daemon (``inspectd run``): capture -> infer -> decide -> outputs, as a systemd service.

One concern per module:

- ``config``: the TOML file as typed sections; ``settings`` (limits next to fields, the
  parser) and ``registry`` (kinds chosen by ``kind = "..."``) are its machinery;
- ``sources/``, ``triggers/``, ``outputs/``: one module per kind, each with its config
  section and its class; ``interface`` in each holds what the kinds share;
- ``capture``: the capture thread and the typed events it hands the loop;
- ``pipeline``: model, decision and software outputs (what a reload replaces);
  ``decision``: threshold, minimum area, N-of-M; ``verdict``: PASS/REJECT and the record;
- ``devices``: GPIO chip, reject and ready lines, trigger;
- ``health``: READY/WATCHDOG/STATUS and the ready line's policy (``notify`` is the protocol);
- ``reload``: SIGHUP; ``tally``: counts behind STATUS; ``loop``: ``Station``, which coordinates.
"""
