"""公积金: the resident's housing provident fund account, contributions, loans, loan estimates and
withdrawal applications, read from the city's provident-fund center."""

from app_api.platform.column import Column

column = Column.from_package(__name__)


def _dev_sandbox() -> object:
    """The loopback stand-in this column talks to in development (an ASGI app): the app factory
    mounts it at ``/sandbox/provident_fund`` when the environment is development, where the default
    settings point."""
    from columns.provident_fund.sandbox import dev_app

    return dev_app()


column.provides["dev_sandbox.provident_fund"] = _dev_sandbox
