"""Series that ship with the trainer, named by a short name: ``--data sunspots``.

They are package data, so the name works wherever ``lstm-ag`` is installed, from any
directory; the sources and licences are in this folder's ``README.md``.
"""
import difflib
import os
from importlib import resources

__all__ = ["BUNDLED", "resolve"]

#: Short name -> file in this package.
BUNDLED = {"sunspots": "sunspots.csv"}


def resolve(data: str) -> str:
    """The file ``--data`` names: ``data`` itself when such a path exists, else the bundled
    series of that short name (its path inside the installed package), else ``data`` as given
    (reading it then says there is no such file). A missing name close to a bundled one
    (``sunspot``) raises :class:`~train.series_io.SeriesError` saying which it may mean."""
    if os.path.exists(data):
        return data
    if data in BUNDLED:
        return str(resources.files(__name__) / BUNDLED[data])
    close = difflib.get_close_matches(data, list(BUNDLED), n=1, cutoff=0.75)
    if close:
        from ..series_io import SeriesError
        raise SeriesError(f"{data}: no such file; did you mean {close[0]}, the series that "
                          "ships with lstm-ag?")
    return data
