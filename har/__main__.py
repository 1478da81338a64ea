"""``python -m har <command>``: see har/cli.py."""

import os
import sys

# Python's own messages (logging, errors) go to a copy of file descriptor 2: har.serve.runtime silences fd 2 while
# TensorFlow imports, on a thread while the video decodes, and progress lines must not vanish meanwhile.
sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")

from har.cli import main  # noqa: E402  (after the stderr copy: logging binds to it)

code = main()
sys.stdout.flush()
sys.stderr.flush()
# Tearing down an interpreter that has loaded TensorFlow takes about a second and has nothing left to do: every
# file is closed and every temporary directory removed by now.
os._exit(code)
