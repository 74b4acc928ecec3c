"""Children that Ctrl-C can stop, however the test run itself was started.

A shell starts a background job (a CI job launched with `&`, nohup) with SIGINT ignored, and
children inherit that: a test that sends SIGINT to stand in for Ctrl-C would then find the
child still running. The child gets back the default disposition a terminal would give it.
"""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """`preexec_fn` for subprocess.Popen: SIGINT raises KeyboardInterrupt again."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
