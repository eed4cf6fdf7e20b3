"""User-facing exceptions.

Every error a user can cause (bad spec, unknown name, impossible budget, missing data) is an
``ArchbenchError``; its message names the bad value and what is allowed. The CLI turns these
into one readable line and a non-zero exit code.
"""

from __future__ import annotations


class ArchbenchError(Exception):
    """Base class of every error caused by user input rather than a bug."""


class UnknownNameError(ArchbenchError, LookupError):
    """A name that is not in a registry (block, preset, dataset, ...)."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class SpecError(ArchbenchError, ValueError):
    """An invalid network, block, training or experiment specification."""


class BudgetError(ArchbenchError, ValueError):
    """A parameter or MAC budget that a family cannot meet within tolerance."""


class DataError(ArchbenchError):
    """A dataset that cannot be found or read."""


class DataNotFoundError(DataError):
    """A dataset whose files are nowhere it looked; says where and how to get them."""

    def __init__(
        self, message: str, *, places: str = "", how: str = "", downloadable: bool = False
    ):
        super().__init__(message)
        self.places = places  # every folder looked in, and the data root
        self.how = how  # how to get the files without a download
        self.downloadable = downloadable  # torchvision can download them (when online)
