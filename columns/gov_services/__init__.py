"""Government services column (政务服务): item catalogue, one-tap applications, review,
supervision (电子监察), delivery and rating (好差评).

Offers the ``ServiceCatalogue`` capability (see :mod:`columns.gov_services.capability`) so the
assistant answers from the same catalogue residents apply through, and agents file through it.
In development its sandboxes of the postal service and of S3 are served at ``/sandbox/gov_services``.
"""

from starlette.types import ASGIApp

from app_api.platform.capabilities import ServiceCatalogue
from app_api.platform.column import Column

column = Column.from_package(__name__)


def _dev_sandbox() -> ASGIApp:
    """The loopback stand-ins this column talks to in development: the app factory mounts them at
    ``/sandbox/gov_services`` (``/postal`` and ``/s3``), where the default settings point."""
    from columns.gov_services.sandbox import dev_app

    return dev_app()


def _provide() -> None:
    from columns.gov_services.capability import GovServiceCatalogue

    column.provide(ServiceCatalogue, GovServiceCatalogue())

    # The assistant's conditions walk-through (bot/walkthrough.py) asks the catalogue's rules through this.
    from columns.gov_services.assist import provide_guide

    provide_guide(column)


column.dev_sandbox = _dev_sandbox
_provide()
