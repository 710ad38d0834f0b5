"""Numbers as people read them, the same in the CLI and in error messages."""


def size(count: float) -> str:
    """`1536` → `1.5 KiB`; bytes stay whole."""
    if abs(count) < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if abs(count) < 1024 or unit == "TiB":
            break
    return f"{count:.1f} {unit}"
