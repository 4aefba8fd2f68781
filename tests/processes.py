"""Watching an `ablate` process a test started: its output in one line, and waiting on a condition while
it runs (a driver that ended first fails the test at once, with its output)."""

import subprocess
import time
from pathlib import Path


def one_line(output: str) -> str:
    """Output as one line, whatever width rich wrapped it to."""
    return " ".join(output.split())


def while_driver_runs(driver: subprocess.Popen, log: Path, condition, timeout: float = 120.0, every: float = 0.5):
    """`condition()` once true, polled while the driver runs; a driver that ended fails the test at once,
    with its output, rather than at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if driver.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.returncode}) first:\n{log.read_text()}")
        time.sleep(every)
    raise AssertionError(f"timed out waiting; the driver said:\n{log.read_text()}")


# A stack printed to the user: Python's own, or Ray's copy of a worker's, which it prints for an error
# nobody fetched ("Unhandled error"), frame by frame with no "Traceback" line.
STACK_SIGNS = ("Traceback", "Unhandled error", 'File "')


def shows_a_stack(output: str) -> bool:
    return any(sign in output for sign in STACK_SIGNS)
