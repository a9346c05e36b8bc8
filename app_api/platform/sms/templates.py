"""SMS message kinds: one per message the platform sends (login code, mandate code, each notification
template), each with its parameters in a declared order.

Providers approve one template per kind with fixed parameters (Tencent Cloud positionally, ``{1}``,
``{2}``...; Aliyun by name, ``${code}``), so a kind's parameters are declared once, here, and every
gateway sends them in that order or under those names. The text (``$name`` placeholders) is what
the development sandbox records and what the provider's approved template should read.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class SmsTemplate:
    kind: str
    text: str
    params: tuple[str, ...]

    def render(self, params: Mapping[str, object], *, sign: str) -> str:
        return f"【{sign}】" + string.Template(self.text).safe_substitute(
            {k: "" if v is None else str(v) for k, v in params.items()}
        )


def params_of(text: str) -> tuple[str, ...]:
    """The ``$name`` placeholders of ``text`` in order of first appearance."""
    seen: dict[str, None] = {}
    for m in _PLACEHOLDER.finditer(text.replace("$$", "")):
        seen.setdefault(m.group("braced") or m.group("named"), None)
    return tuple(seen)


_declared: dict[str, SmsTemplate] = {}


def declare(kind: str, text: str, params: tuple[str, ...] | None = None) -> SmsTemplate:
    """Declare (or re-declare) a message kind; ``params`` default to the text's placeholders in order."""
    found = params_of(text)
    params = found if params is None else tuple(params)
    if len(set(params)) != len(params) or set(params) != set(found):
        raise ValueError(f"SMS template {kind!r}: parameters {params} do not match the text's {found}")
    spec = SmsTemplate(kind=kind, text=text, params=params)
    _declared[kind] = spec
    return spec


def declared() -> dict[str, SmsTemplate]:
    return dict(_declared)


def find(kind: str) -> SmsTemplate | None:
    return _declared.get(kind)
