"""城市公告: city announcements. The small column that proves the framework."""

from columns.base import Column

column = Column.from_package(__name__)
