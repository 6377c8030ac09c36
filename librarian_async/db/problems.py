"""Recording damaged and missing files. Callers own the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from librarian_async.db.models import CorruptFile, ErrorRecord, File, Instance


async def record_corrupt_instance(
    session: AsyncSession,
    *,
    file: File,
    instance: Instance,
    computed_checksum: str,
    found_at: datetime,
) -> CorruptFile:
    """Add a corrupt-file row for the instance, or bump the count of the existing one."""
    existing = await session.scalar(
        select(CorruptFile).where(CorruptFile.instance_id == instance.id)
    )
    if existing is not None:
        existing.count += 1
        existing.corrupt_time = found_at
        existing.computed_checksum = computed_checksum
        return existing
    corrupt = CorruptFile(
        file_name=file.name,
        instance_id=instance.id,
        instance_path=instance.path,
        corrupt_time=found_at,
        size=file.size,
        checksum=file.checksum,
        computed_checksum=computed_checksum,
        count=1,
    )
    session.add(corrupt)
    return corrupt


async def record_missing_instance(
    session: AsyncSession, *, instance: Instance, caller: str, found_at: datetime
) -> None:
    """A missing file is an error for an operator, not a corruption."""
    session.add(
        ErrorRecord(
            severity="error",
            category="missing_file",
            message=f"{instance.file_name!r}: instance {instance.id} missing at {instance.path}",
            caller=caller,
            raised_time=found_at,
        )
    )


async def record_unverifiable_instance(
    session: AsyncSession, *, instance: Instance, reason: str, caller: str, found_at: datetime
) -> None:
    """An instance whose bytes could not be read or compared: not known to be corrupt."""
    session.add(
        ErrorRecord(
            severity="error",
            category="unverifiable_file",
            message=(
                f"{instance.file_name!r}: instance {instance.id} at {instance.path}"
                f" cannot be verified: {reason}"
            ),
            caller=caller,
            raised_time=found_at,
        )
    )
