"""The inter-librarian HTTP API (Librarian v2 protocol, PROTOCOL.md §2-§3).

* :func:`create_app` builds the FastAPI app (protocol routes and ``/metrics``);
* :func:`protocol_router` gives the protocol routes alone, to mount in another app;
* :class:`ApiState` is what the handlers share (context, authenticator, store opener).

This package writes rows that the background tasks pick up; it never imports the tasks.
"""

from librarian_async.api.app import create_app, protocol_router
from librarian_async.api.state import ApiState

__all__ = ["ApiState", "create_app", "protocol_router"]
