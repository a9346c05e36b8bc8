"""Migrations: Alembic with one branch (and one ``migrations/`` folder) per package.

Every package with components and every discovered column contributes their own folder; ``upgrade heads``
applies them all. Table names carry the package's prefix, which is how autogenerate keeps each
package's revisions to its own tables.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from app_api.core.settings import ROOT, get_settings
from app_api.wiring.components import components, packages


def table_prefix(package: str) -> str:
    return "app_" if package == "app_api" else f"{package}_"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def migration_dirs() -> dict[str, Path]:
    """Package name → its migrations folder (component packages first, then discovered columns)."""
    from app_api.platform.home.loader import discover

    out: dict[str, Path] = {}
    for pkg in packages():
        d = _package_dir(pkg)
        if d is not None:
            out[pkg] = d / "migrations" / "versions" if pkg == "app_api" else d / "migrations"
    for slug, column in discover(strict=False).columns.items():
        d = _package_dir(column.package)
        if d is not None:
            out[slug] = d / "migrations"
    return out


def import_all_models() -> None:
    """Every table: importing the components imports their models; columns import theirs."""
    from app_api.platform.home.loader import discover

    components()

    discover(strict=False)


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "app_api" / "migrations"))
    dirs = [str(d) for d in migration_dirs().values() if d.is_dir()]
    cfg.set_main_option("version_locations", " ".join(dirs))
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option("sqlalchemy.url", url or get_settings().database_url)
    return cfg


def upgrade(url: str | None = None) -> None:
    command.upgrade(alembic_config(url), "heads")


def check(url: str | None = None) -> None:
    """Fail if the models differ from what the migrations build (Alembic's ``check``)."""
    command.check(alembic_config(url))


def revision(package: str, message: str) -> None:
    """Autogenerate a revision of ``package``'s tables into its own branch, against a scratch SQLite."""
    dirs = migration_dirs()
    if package not in dirs:
        raise SystemExit(f"unknown package {package!r}; known: {', '.join(dirs)}")
    vdir = dirs[package]
    vdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.db"
        cfg = alembic_config(url)
        cfg.set_main_option("version_locations", " ".join(str(d) for d in dirs.values() if d.is_dir()))
        command.upgrade(cfg, "heads")
        cfg.cmd_opts = type("Opts", (), {"x": [f"package={package}"]})()
        script = ScriptDirectory.from_config(cfg)
        labels = {label for rev in script.walk_revisions() for label in (rev.branch_labels or ())}
        if package in labels:
            command.revision(cfg, message=message, autogenerate=True, head=f"{package}@head")
        else:
            depends = None if package == "app_api" else "app_api@head"
            depends_rev = script.get_revision(depends).revision if depends else None
            command.revision(
                cfg,
                message=message,
                autogenerate=True,
                head="base",
                branch_label=package,
                version_path=str(vdir),
                depends_on=depends_rev,
            )


def run_upgrade_in_thread(url: str | None = None) -> None:
    """For async callers (tests, start-up): Alembic's env runs its own event loop."""
    import threading

    err: list[BaseException] = []

    def target() -> None:
        try:
            upgrade(url)
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if err:
        raise err[0]
