"""The column contract: what a column package provides, and how the platform finds it.

A column is a package under ``columns/<slug>/`` (or any installed package) registered under the
entry-point group ``wojia.columns``; its ``__init__`` exposes ``column = Column.from_package(__name__)``.
The platform reads ``manifest.toml`` strictly, imports ``models``, ``router`` and ``tasks`` if present,
and mounts ``router.router`` under ``/api/v1/columns/<slug>``. Columns never import each other:
a column offers something to others only as a capability, a Protocol of
``app_api.platform.capabilities`` (``column.provide(ServiceCatalogue, impl)``).
"""

from __future__ import annotations

import importlib
import importlib.resources
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp

T = TypeVar("T")

CATEGORIES: tuple[str, ...] = (
    "查询缴费",
    "政务服务",
    "金融服务",
    "交通出行",
    "居家生活",
    "医疗卫生",
    "教育培训",
    "城市资讯",
)
Category = Literal[
    "查询缴费", "政务服务", "金融服务", "交通出行", "居家生活", "医疗卫生", "教育培训", "城市资讯"
]


class ColumnManifest(BaseModel):
    """``manifest.toml``; unknown keys are an error, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")
    name: str = Field(min_length=1, max_length=20)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    category: Category
    identity_level: int = Field(ge=0, le=3)
    icon: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=200)
    order: int = Field(default=100, ge=0, le=10000)
    elderly: bool = Field(default=False, description="shown on the simplified elderly-mode home screen")


@dataclass
class Column:
    manifest: ColumnManifest
    package: str
    # Capabilities by protocol (``app_api.platform.capabilities``), registered when the column loads.
    capabilities: dict[type, object] = field(default_factory=dict)
    # Development only: a factory of the ASGI sandbox of the column's external system, mounted at
    # ``/sandbox/<slug>``; it imports the column's ``sandbox`` package, which the wheel leaves out.
    dev_sandbox: Callable[[], ASGIApp] | None = None

    def provide(self, protocol: type[T], impl: T) -> None:
        self.capabilities[protocol] = impl

    @classmethod
    def from_package(cls, package: str) -> Column:
        raw = importlib.resources.files(package).joinpath("manifest.toml").read_text(encoding="utf-8")
        manifest = ColumnManifest.model_validate(tomllib.loads(raw))
        folder = package.rsplit(".", 1)[-1]
        if manifest.slug != folder:
            raise ValueError(f"manifest slug {manifest.slug!r} does not match package folder {folder!r}")
        return cls(manifest=manifest, package=package)

    @property
    def slug(self) -> str:
        return self.manifest.slug

    def submodule(self, name: str) -> ModuleType | None:
        try:
            return importlib.import_module(f"{self.package}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{self.package}.{name}":
                return None
            raise
