"""``librarian-async demo``: two librarians in one process, on loopback, with SQLite.

The source adds sample files, sends them to the destination over the network (the seed's
"Inter-Librarian Transfer" configurations), carries more on a SneakerNet drive (local clone,
manifest export, ingest, receive, callback), and the destination's integrity check finds the
one file the demo damaged on purpose. Each step prints what happened and checks that it
really did; :class:`DemoFailed` names the first step that did not.

* :mod:`.sites` — a librarian's folder, database, stores, server and peer accounts;
* :mod:`.samples` — sample observation files; :mod:`.runs` — running task entries once;
* :mod:`.facts` — reading results back; :mod:`.steps`, :mod:`.shipping` — the steps.
"""

from librarian_async.demo.sites import DemoFailed
from librarian_async.demo.steps import run_demo

__all__ = ["DemoFailed", "run_demo"]
