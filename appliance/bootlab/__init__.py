"""bootlab: the appliance that runs inside the bootc image (CLI, daemon, services)."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`__version__`, read from the install's metadata on first use: importing
    importlib.metadata costs 35-50 ms, which `bootlab status` would pay for nothing."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import metadata  # noqa: PLC0415

    try:
        version = metadata.version("bootlab")
    except metadata.PackageNotFoundError:  # running from a checkout without an install
        version = "0+unknown"
    globals()["__version__"] = version
    return version
