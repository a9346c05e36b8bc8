"""水电气缴费: water, power and gas bills of bound household accounts, paid through payments."""

from columns.base import Column

column = Column.from_package(__name__)


def _dev_sandbox() -> object:
    """The loopback stand-in this column talks to in development (an ASGI app): the app factory
    mounts it at ``/sandbox/utilities`` when the environment is development, where the default
    settings point."""
    from columns.utilities.sandbox import dev_app

    return dev_app()


column.provides["dev_sandbox.utilities"] = _dev_sandbox
