"""The fault suite (``make faults``): run on its own, never by the normal ``make test``.

Its tests are collected only when the command line names this folder (or a file in it): ``pytest``
alone (``testpaths = ["tests"]``) ignores them. One cluster (own PostgreSQL, Redis, sandboxes, api,
worker, scheduler) serves the whole run; each scenario starts from a healthy cluster and checks only
the records its own load created, plus what is global (the audit chain). On a failure the last lines
of every process's log are printed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Cluster, make_cluster, new_base, remove_base

HERE = Path(__file__).resolve().parent


def _named(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name.startswith("test_") and not _named(config):
        return True
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def cluster_base(request: pytest.FixtureRequest) -> Iterator[Path]:
    base = new_base()
    yield base
    if request.session.testsfailed or os.environ.get("WOJIA_FAULTS_KEEP_LOGS"):
        print(f"\nfault suite: the processes' logs are kept in {base / 'logs'}")
        remove_base(base, keep_logs=True)
    else:
        remove_base(base)


@pytest.fixture(scope="session")
async def cluster(cluster_base: Path) -> AsyncIterator[Cluster]:
    c = await asyncio.to_thread(make_cluster, cluster_base)
    try:
        await c.wait_api(timeout=180)
    except RuntimeError:
        print(c.logs())
        c.stop()
        raise
    yield c
    c.stop()


@pytest.fixture
async def healthy(cluster: Cluster, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """The cluster with every service and process up (a previous scenario may have left one down)."""
    await asyncio.to_thread(cluster.ensure_up)
    await cluster.wait_api(timeout=180)
    yield cluster
    if request.node.stash.get(_FAILED, False):
        print(f"\n===== process logs ({cluster.base / 'logs'})\n{cluster.logs()}")
