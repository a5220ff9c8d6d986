"""The station page (``inspectd web``, inspectd-web.service): a room of its own beside the station.

It follows what the station already writes, read-only: the journal (``records``, the one record shape),
the reject archive, and the live tap (``livetap``: the latest frame under /run). It never imports the
station's loop, its camera or its model (an import-linter contract), so it runs light (no OpenCV, no
numpy, no OpenVINO) and a fault here never reaches the reject line.

- ``settings``: web.toml (listener, password, certificate); ``station_facts``: the station's file, as the page needs it;
- ``journal``: the follower; ``shift``: the records folded into the shift so far and the ready line's state;
- ``live``, ``gallery``, ``model_facts``, ``files``: what the page shows, and reading files that cannot escape their folder;
- ``security``: headers, Host check, password; ``server``: the routes (tornado); ``static/``: the page itself.
"""
