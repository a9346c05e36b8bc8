"""公积金: the resident's housing provident fund account, contributions, loans, loan estimates and
withdrawal applications, read from the city's provident-fund center."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app_api.platform.column import Column

if TYPE_CHECKING:
    from starlette.types import ASGIApp

column = Column.from_package(__name__)


def _dev_sandbox() -> ASGIApp:
    """The loopback center this column talks to in development: the app factory mounts it at
    ``/sandbox/provident_fund`` when the environment is development, where the default settings
    point. The ``sandbox`` package is imported here only; the wheel leaves it out."""
    from columns.provident_fund.sandbox.demo import dev_app

    return dev_app()


column.dev_sandbox = _dev_sandbox
