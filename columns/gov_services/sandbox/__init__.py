"""Development sandboxes of the column's external systems, served at ``/sandbox/gov_services``:
the postal service's waybill API (``/postal``) and S3-compatible object storage (``/s3``).

Imported only by the column's dev-sandbox factory (``columns.gov_services.column.dev_sandbox``);
the built wheel leaves this package out.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount

from columns.gov_services.config import get_config
from columns.gov_services.sandbox.postal import postal_app
from columns.gov_services.sandbox.s3 import S3Sandbox


def dev_app() -> Starlette:
    """Both sandboxes, signed with the development settings the column's defaults use. The S3
    sandbox's objects are at ``app.state.s3.objects`` (tests look at what was stored)."""
    cfg = get_config()
    s3 = S3Sandbox(
        access_key=cfg.s3_access_key, secret_key=cfg.s3_secret_key.get_secret_value(), region=cfg.s3_region
    )
    app = Starlette(routes=[Mount("/postal", app=postal_app()), Mount("/s3", app=s3.app())])
    app.state.s3 = s3
    return app
