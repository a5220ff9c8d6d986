"""The one exception type for errors a user can cause and fix."""

EX_CONFIG = 78  # sysexits.h: configuration error; the unit does not restart on it


class InspectdError(Exception):
    """A problem the user can fix: the message names the file, the field and the fix.

    The CLI prints it as one line and exits with ``exit_code``; no traceback.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
