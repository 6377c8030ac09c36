"""SneakerNet: moving files between librarians on shipped drives (PROTOCOL §5).

:func:`export_manifest` runs at the source: it describes a drive store in a manifest and
creates the outgoing transfers the drive will complete. :func:`ingest_manifest` runs at the
destination: it stages the drive's files so that ``receive_clone`` ingests them and tells
the source. :mod:`.manifest` defines the file format.
"""

from librarian_async.sneakernet.export import ExportSummary, export_manifest
from librarian_async.sneakernet.ingest import IngestSummary, ingest_manifest
from librarian_async.sneakernet.manifest import (
    ManifestEntry,
    ManifestError,
    ManifestHeader,
    ManifestInfo,
    check_manifest,
    read_entries,
)

__all__ = [
    "ExportSummary",
    "IngestSummary",
    "ManifestEntry",
    "ManifestError",
    "ManifestHeader",
    "ManifestInfo",
    "check_manifest",
    "export_manifest",
    "ingest_manifest",
    "read_entries",
]
