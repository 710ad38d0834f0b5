"""The training worker: `python -m bootlab.train.worker PLAN.json` in the ML venv, started
by the supervisor (bootlab.train.supervise). Exit codes follow the appliance's: 65 bad
data, 78 not configured (a checkpoint directory it must not touch), 1 anything else."""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from pathlib import Path

from bootlab.errors import Exit
from bootlab.train.checkpoint import CheckpointError
from bootlab.train.events import Events
from bootlab.train.plan import Plan
from bootlab.train.tokens import DataError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan = Plan.read(Path(args[0]))
    events = Events.from_env()
    stopping = threading.Event()
    # SIGTERM (systemctl stop): finish the step, save, exit 0; the next start resumes.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    import torch  # noqa: PLC0415 - after the signal handlers: importing takes seconds

    from bootlab.train.distributed import Ranks  # noqa: PLC0415
    from bootlab.train.engine import Stopped, Trainer  # noqa: PLC0415

    try:
        result = Trainer(plan, events, stopping).run()
    except DataError as error:
        shown = error.problems
        events.emit(
            "error",
            error=f"{len(shown)} problem(s) in the training data:\n  " + "\n  ".join(shown),
            hint="fix the lines named and import the dataset again (bootlab data "
            "import); nothing was trained",
            code=Exit.DATA,
        )
        return Exit.DATA
    except CheckpointError as error:
        events.emit("error", error=error.message, hint=error.hint, code=Exit.NOT_CONFIGURED)
        return Exit.NOT_CONFIGURED
    except Stopped:
        events.emit("stopped")
        return Exit.OK
    except torch.OutOfMemoryError:
        events.emit(
            "error",
            error="out of memory while training",
            hint="lower train.max_batch_len, use LoRA (train.lora), or more GPUs; the "
            "job resumes from its last checkpoint",
            code=Exit.ERROR,
        )
        return Exit.ERROR
    except Exception as error:  # the reason reaches the admin, the trace the journal
        events.emit(
            "error",
            error=f"training failed: {error.__class__.__name__}: {error}",
            hint="see journalctl -u bootlab-train; the job resumes from its last "
            "checkpoint on the next start",
            code=Exit.ERROR,
        )
        traceback.print_exc()
        return Exit.ERROR
    finally:
        Ranks().stop()
    # The history stays in result.json: a long job's would not fit one event.
    events.emit("done", final=result["final"], best=result["best"])
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
