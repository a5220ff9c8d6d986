"""Take frames as fast as the model allows."""

from __future__ import annotations


class ContinuousTrigger:
    def wait(self, timeout_s: float) -> bool:
        return True

    def close(self) -> None:
        pass
