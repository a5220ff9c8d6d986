"""The plant's view of a station: ``inspectd publish`` follows the station's journal records and publishes them to an
MQTT broker (at least once, in order, from a stored cursor) and serves their figures to Prometheus.

A room of its own beside the station: it reads the journal the station writes and never imports the station's loop
(import-linter contract in pyproject.toml); it runs as its own unit (systemd/inspectd-publish.service), user and
sandbox, so a fault here never reaches the reject line. Its Python dependency (paho-mqtt) is the ``plant`` extra.
"""
