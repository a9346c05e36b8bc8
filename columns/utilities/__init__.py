"""水电气缴费: water, power and gas bills of bound household accounts, paid through payments."""

from columns.base import Column

column = Column.from_package(__name__)
