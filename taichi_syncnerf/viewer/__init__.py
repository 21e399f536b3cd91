"""The browser viewer (``taichi-syncnerf view``): a trained or training run seen through viser.

Modules:
    camera   the browser camera as the project's cameras and rays (pure numpy, no viser)
    rig      the dataset's cameras as labelled frusta coloured by their learned offset
    live     the model of a run, reloaded when a newer checkpoint appears
    panel    the GUI: figures, time slider, playback, snap-to-camera, resolution
    app      the server: one render loop per browser, the one rendering path of ``render``

viser is an optional dependency (``pip install -e '.[viewer]'``); :func:`require_viser` says how to
install it when it is missing.
"""
from __future__ import annotations

from taichi_syncnerf.errors import UserError

INSTALL_HINT = "pip install -e '.[viewer]'  (or: pip install 'viser>=1.0')"


def require_viser():
    """Import and return the ``viser`` module, or raise a one-line UserError saying how to install it."""
    try:
        import viser
    except ImportError:
        raise UserError(f"the viewer needs the viser package, which is not installed: {INSTALL_HINT}") from None
    return viser
