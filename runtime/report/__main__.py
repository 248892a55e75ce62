"""``python -m runtime.report`` (see :mod:`runtime.report`)."""
import sys

from runtime.report.command import main

sys.exit(main())
