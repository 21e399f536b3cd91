"""taichi-syncnerf: dynamic radiance fields from unsynchronised multi-view video."""

__version__ = "0.1.0"
# Version of the on-disk run/checkpoint format; bump on incompatible change.
FORMAT_VERSION = 1
