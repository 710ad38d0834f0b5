"""bootlab: the appliance that runs inside the bootc image (CLI, daemon, services)."""

from importlib import metadata

try:
    __version__ = metadata.version("bootlab")
except metadata.PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0+unknown"
