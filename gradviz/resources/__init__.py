"""Files the app ships (its icon), read with :mod:`importlib.resources` so that they are
found in an installed wheel as in a checkout."""
from __future__ import annotations

from importlib import resources


def icon_bytes() -> bytes:
    """The app's icon, an SVG."""
    return resources.files(__name__).joinpath("gradviz.svg").read_bytes()


__all__ = ["icon_bytes"]
