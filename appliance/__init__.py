"""ClinicBox appliance core: configuration, service process, media, record store, discovery."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clinicbox")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"
