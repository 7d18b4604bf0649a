"""Exception types of :mod:`itslive_dask`.

Every error a user can cause (bad input, a file that is not a granule, a store that already
exists...) is raised as a subclass of :class:`ItsliveDaskError`, with a message that names the
object at fault and, where possible, what to pass instead. The CLI prints these as one line.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "GranuleError",
    "InvalidInputError",
    "ItsliveDaskError",
    "SearchError",
    "StoreError",
]


class ItsliveDaskError(Exception):
    """Base class of every error raised on purpose by itslive_dask."""


class InvalidInputError(ItsliveDaskError, ValueError):
    """An argument given by the user is not valid (dates, polygon, CRS, chunks, names...)."""


class GranuleError(ItsliveDaskError):
    """A granule could not be opened or is not a valid ITS_LIVE velocity granule.

    Parameters
    ----------
    source
        The path or URL of the granule.
    problem
        What is wrong, in a few words.
    attempts
        How many times reading it was tried.
    seconds
        Time spent trying (failed attempts and back-off), in seconds.
    """

    def __init__(self, source: str, problem: str, attempts: int = 1, seconds: float = 0.0):
        self.source = str(source)
        self.problem = problem
        self.attempts = attempts
        self.seconds = seconds
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self):  # keep the signature picklable (dask workers)
        return (type(self), (self.source, self.problem, self.attempts, self.seconds))


class SearchError(ItsliveDaskError):
    """A search backend failed or answered something that is not a valid response."""


class StoreError(ItsliveDaskError):
    """A Zarr store cannot be created, resumed or appended as asked."""


class ClusterError(ItsliveDaskError):
    """The Dask cluster could not be reached or started."""
