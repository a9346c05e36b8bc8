from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.db import UTCDateTime, created_at_field, datetime_field, new_id, utcnow


class JobStatus(StrEnum):
    pending = "pending"  # waiting to run (first attempt, or sent and not yet started)
    running = "running"  # a worker holds its lease
    retry = "retry"  # failed; runs again at ``due_at``
    done = "done"  # its handler finished
    dead = "dead"  # failed every attempt (or cannot run at all): waits for an admin


class OutboxMessage(SQLModel, table=True):
    """A job, written in the same transaction as the change that asks for it.

    The row is the job's truth: the message on the broker is only a wake-up call. The row is
    ``done`` once its handler finished; until then the relay sends it again (see ``outbox``).
    """

    __tablename__ = "app_outbox"
    __table_args__ = (sa.Index("ix_app_outbox_status_due_at", "status", "due_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    task_name: str = Field(max_length=120, index=True)
    arguments: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: dt.datetime = created_at_field()
    status: str = Field(default=JobStatus.pending, max_length=16)
    # When the job may next run (creation, or the end of its backoff).
    due_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Last time its message went to the broker (null: never sent since it became due).
    dispatched_at: dt.datetime | None = datetime_field()
    lease_until: dt.datetime | None = datetime_field()
    started_at: dt.datetime | None = datetime_field()
    finished_at: dt.datetime | None = datetime_field()
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=2000)
    # The schedule whose tick made this job, if any.
    schedule: str | None = Field(default=None, max_length=160)


class JobSchedule(SQLModel, table=True):
    """One periodic job. Every process that runs the jobs loop looks at these rows; a tick is
    claimed by moving ``next_run_at`` forward with a compare-and-set, so it runs once however many
    schedulers run."""

    __tablename__ = "app_job_schedule"

    name: str = Field(primary_key=True, max_length=160)
    task_name: str = Field(max_length=120)
    cron: str = Field(max_length=120)
    next_run_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    last_tick_at: dt.datetime | None = datetime_field()
    last_job_id: str | None = Field(default=None, max_length=32)
    last_finished_at: dt.datetime | None = datetime_field()
    last_status: str | None = Field(default=None, max_length=16)
    last_failed_at: dt.datetime | None = datetime_field()
    last_error: str | None = Field(default=None, max_length=2000)
