"""The installed distribution's version (``aiq-search --version``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aiq-search")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"
