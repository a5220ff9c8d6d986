"""The station daemon (``inspectd run``): capture -> infer -> decide -> outputs, as a systemd service.

One concern per module:

- ``config``: the TOML file as typed sections (``Config.rule`` makes the decision rule of
  ``runtime.decision`` from ``[model]`` and ``[decision]``; ``Config.gpio_lines`` lists every
  line); ``settings`` (the parser over ``fields``) and ``registry`` (kinds chosen by
  ``kind = "..."``) are its machinery; ``paths`` the default file locations;
- ``sources/``, ``triggers/``, ``outputs/``: one module per kind, each with its config
  section and its class, which knows its own frame size, preflight and doctor needs;
  ``interface`` in each holds what the kinds share; a new kind is its module plus one line
  (its registry, or for an output its table in ``Config``);
- ``capture``: the capture thread and the typed events it hands the loop;
- ``pipeline``: model, rule and software outputs (what a reload replaces); ``verdict``: the
  record every output receives;
- ``devices``: GPIO chip, reject and ready lines, trigger;
- ``health``: READY/WATCHDOG/STATUS and the ready line's policy (``notify`` is the protocol);
- ``preflight``: what check, start and a reload verify; ``reload``: a reload plan made off the
  loop; ``signals``: what each signal asks for; ``tally``: counts behind STATUS; ``drift``: the
  drift alarm; ``loop``: ``Station``, which coordinates and applies reload plans.
"""
