"""keep_buffer_pages: freed buffers' pages are reused instead of faulted in again."""

from __future__ import annotations

import subprocess
import sys

CHURN = """
import resource, sys
from librarian_async.heap import keep_buffer_pages
if sys.argv[1] == "kept":
    assert keep_buffer_pages()
alive = []
def churn(count):  # buffers of 256 KiB to 1 MiB, four alive at a time, like socket reads
    for n in range(count):
        alive.append(b"x" * ((256 + n * 37 % 768) * 1024))
        if len(alive) > 4:
            alive.pop(0)
churn(50)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn(400)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_freed_buffers_pages_are_reused() -> None:
    freed, kept = page_faults("freed"), page_faults("kept")
    assert freed > 5_000  # glibc's defaults: fresh pages for many of the buffers
    assert kept < freed / 20
