"""The upgrade informer: `bootc upgrade --check` on a timer, its answer kept in
/var/lib/bootlab/upgrade.json (for `bootlab status`) and in the login banner (motd)."""

from __future__ import annotations

import json
import time

from bootlab import files
from bootlab.api import UpgradeStatus
from bootlab.errors import BootlabError
from bootlab.paths import Paths
from bootlab.run import run

# What `bootc upgrade --check` prints (bootc 1.x): "No changes in: IMAGE" when current, and
# "Update available for: IMAGE" with version and digest lines when not.
_CURRENT = "No changes in"
_AVAILABLE = "Update available"


def check(paths: Paths) -> UpgradeStatus:
    try:
        result = run(["bootc", "upgrade", "--check"], capture=True, check=False, timeout=600)
    except BootlabError as error:
        status = UpgradeStatus(checked_at=time.time(), available=None, message=error.message)
    else:
        text = (result.stdout + result.stderr).decode(errors="replace").strip()
        last = text.splitlines()[-1] if text else ""
        if result.returncode != 0:
            available = None
            message = f"the check failed (exit {result.returncode}): {last}"
        elif _CURRENT in text or _AVAILABLE in text:
            available = _AVAILABLE in text
            first = next(
                line for line in text.splitlines() if _CURRENT in line or _AVAILABLE in line
            )
            message = first.strip()
        else:
            available = None
            message = f"bootc answered something bootlab does not know: {last}"
        status = UpgradeStatus(checked_at=time.time(), available=available, message=message)
    record(paths, status)
    return status


def record(paths: Paths, status: UpgradeStatus) -> None:
    files.write_atomic(paths.upgrade_status, status.model_dump_json().encode(), 0o644)
    if status.available:
        banner = f"bootlab: an image update is ready ({status.message}); run `bootc upgrade`.\n"
        files.write_atomic(paths.motd, banner.encode(), 0o644)
    else:
        paths.motd.unlink(missing_ok=True)


def last(paths: Paths) -> UpgradeStatus | None:
    try:
        return UpgradeStatus.model_validate(json.loads(paths.upgrade_status.read_bytes()))
    except (OSError, ValueError):
        return None
