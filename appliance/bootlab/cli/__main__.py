"""`python -m bootlab.cli`: the same as the `bootlab` command."""

import sys

from bootlab.cli import main

sys.exit(main())
