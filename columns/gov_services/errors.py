"""Errors of the government services column (codes ``gov_services.*``, Chinese titles)."""

from __future__ import annotations

from app_api.errors import ValidationFailed


class CatalogueFileInvalid(ValidationFailed):
    """A catalogue file with any bad row: nothing is imported; ``errors`` lists every problem."""

    code = "gov_services.catalogue_file_invalid"
    title = "事项目录文件有误，未导入任何事项"
