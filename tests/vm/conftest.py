"""vm tier: the dev image as a real VM under qemu (a real kernel, systemd as the real PID 1,
the units' sandbox in force, reboots), reached over SSH on a forward bound to 127.0.0.1."""

from tests.support.infra import dev_image  # noqa: F401 - fixtures for this tier
from tests.support.vm import guest, vm_disk  # noqa: F401
