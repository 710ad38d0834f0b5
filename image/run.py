"""The build side runs programs through the appliance's one helper (`bootlab.run`)."""

from bootlab.run import output, require, run

__all__ = ["output", "require", "run"]
