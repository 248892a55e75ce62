"""Experiments and comparisons built on the runtime, kept apart from the library it ships.

A tool here takes its whole environment as arguments (or environment variables): nothing of one
machine's layout is written into it.

- ``python -m runtime.tools.peer``: our end-to-end tracker against MediaPipe Face Mesh, side by side
  (MediaPipe runs in a virtual environment of its own: ``--peer-python``, ``--peer-script``).
"""
