"""The data exchange sandbox as a process of its own (the city's platform is not our api process):
``python -m app_api.platform.datahub.sandbox.serve --port P`` serves it at ``/sandbox/datahub``.

It reads the same settings as the api (the signing key; the database for population records) and
keeps its certificate library under the var directory, so a restart finds what was issued.
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from app_api.platform.datahub.sandbox.exchange import PREFIX, router


def build() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(router, prefix=PREFIX)
    app.add_api_route("/healthz", lambda: {"status": "ok"}, include_in_schema=False)
    return app


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(build(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
