"""Which transfer methods a receiving store advertises to a sender (PROTOCOL §4).

A store's ``transfer_methods`` JSON says which methods it offers and with which fields.
Deployed peers decode every advertised method as ``local``, ``rsync`` or ``globus`` and use
the first one, so an unknown method breaks them: a sender that sends ``accepts_providers``
gets the offered methods it lists, in its own order of preference (``http`` only then);
any other sender gets the deployed methods in the fixed order of :data:`DEPLOYED_METHODS`
(JSON object order is not kept by PostgreSQL, so the order cannot come from the store).
Offer ``local`` only on stores whose senders share the filesystem: deployed senders use the
first method without checking that it can work from where they run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from librarian_async.remote.schemas import Providers

DEPLOYED_METHODS = ("local", "rsync", "globus")


def advertised_providers(
    offered: Mapping[str, Any],
    accepts_providers: Sequence[str] | None,
    upload_url: str | None = None,
) -> Providers:
    """The methods to advertise, most preferred first.

    A store may offer ``"http": {}`` without a URL: then ``upload_url`` (our own upload
    endpoint, as the sender reaches us) is filled in; without it, ``http`` is left out.
    """
    order = DEPLOYED_METHODS if accepts_providers is None else dict.fromkeys(accepts_providers)
    advertised: Providers = {}
    for name in order:
        fields = _fields(name, offered.get(name), upload_url)
        if fields is not None:
            advertised[name] = fields
    return advertised


def _fields(name: str, offered: Any, upload_url: str | None) -> dict[str, Any] | None:
    if not isinstance(offered, Mapping):
        return None
    fields = dict(offered)
    if name == "http" and not fields.get("url"):
        if upload_url is None:
            return None
        fields["url"] = upload_url
    return fields
