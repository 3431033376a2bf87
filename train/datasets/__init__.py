"""Series that ship with the trainer, named by a short name: ``--data sunspots``.

They are package data, so the name works wherever ``lstm-ag`` is installed, from any
directory; the sources and licences are in this folder's ``README.md``.
"""
import os
from importlib import resources

__all__ = ["BUNDLED", "resolve"]

#: Short name -> file in this package.
BUNDLED = {"sunspots": "sunspots.csv"}


def resolve(data: str) -> str:
    """The file ``--data`` names: ``data`` itself when such a path exists, else the bundled
    series of that short name (its path inside the installed package), else ``data`` as given
    (reading it then says there is no such file)."""
    if data in BUNDLED and not os.path.exists(data):
        return str(resources.files(__name__) / BUNDLED[data])
    return data
