"""城市公告: city announcements. The small column that proves the framework."""

from app_api.platform.column import Column

column = Column.from_package(__name__)
