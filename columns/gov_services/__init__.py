"""Government services column (政务服务): item catalogue, one-tap applications, review,
supervision (电子监察), delivery and rating (好差评).

Offers the ``service_catalogue`` capability (see :mod:`columns.gov_services.capability`) so the
assistant answers from the same catalogue residents apply through.
"""

from app_api.platform.column import Column

column = Column.from_package(__name__)


def _provide() -> None:
    from columns.gov_services.capability import ServiceCatalogue

    column.provides["service_catalogue"] = ServiceCatalogue()


_provide()
