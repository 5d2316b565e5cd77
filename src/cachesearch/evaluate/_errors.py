"""Exceptions raised by the evaluation code.

Both exceptions are picklable with their attributes intact, because search workers (Ray) ship exceptions
between processes and the study records the reason of every failed trial.
"""

from __future__ import annotations

__all__ = ["InvalidOutputError", "PerceptualMetricUnavailableError"]


class InvalidOutputError(RuntimeError):
    """A candidate produced images with non-finite values (NaN or inf).

    A search turns this into a failed trial with the message as its reason; it never crashes the study.

    Attributes:
        num_invalid: Number of images that contain at least one NaN or inf value.
        num_total: Number of images that were checked.
        what: What was checked, e.g. ``"candidate images"``.
    """

    def __init__(self, num_invalid: int, num_total: int, what: str = "candidate images") -> None:
        self.num_invalid = int(num_invalid)
        self.num_total = int(num_total)
        self.what = str(what)
        super().__init__(f"{self.num_invalid} of {self.num_total} {self.what} contain NaN or inf values")

    def __reduce__(self) -> tuple[type[InvalidOutputError], tuple[int, int, str]]:
        return (type(self), (self.num_invalid, self.num_total, self.what))


class PerceptualMetricUnavailableError(RuntimeError):
    """No perceptual metric with real pretrained weights can be built offline; the message says what to do."""
