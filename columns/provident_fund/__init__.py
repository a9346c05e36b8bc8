"""公积金: the resident's housing provident fund account, contributions, loans, loan estimates and
withdrawal applications, read from the city's provident-fund center."""

from columns.base import Column

column = Column.from_package(__name__)
