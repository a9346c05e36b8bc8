"""Chinese messages for request validation errors.

Pydantic explains a refused value in English ("String should match pattern ..."); residents read
Chinese. :func:`chinese_errors` keeps the machine-readable part of each error (``loc``, ``type``)
and replaces ``msg`` by a Chinese sentence: the field's label, then what is wrong
("身份证号码 格式不正确", "金额 不能小于 1", "用途 应为以下之一：购房、装修").

The label convention: a field's Chinese label is its ``title``, on a model field or on a request
parameter: ``Field(title="身份证号码")``, ``Query(title="城市")``, ``Form(title="材料名称")``.
Without one, the field's name is used (``item_code 长度不能少于 4 个字符``). A validator that
raises ``ValueError`` with a Chinese message has that message shown after the label; an English
one is replaced by "的值不正确" (write validator messages in Chinese).
"""

from __future__ import annotations

import enum
import re
import string
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

# One template per pydantic error type a request can trigger; {label} and the error's ctx.
TEMPLATES: dict[str, str] = {
    "missing": "{label} 为必填项",
    "extra_forbidden": "{label} 不是可接受的字段",
    "no_such_attribute": "{label} 不是可接受的字段",
    "string_type": "{label} 应为文本",
    "string_sub_type": "{label} 应为文本",
    "string_unicode": "{label} 应为有效的文本",
    "string_too_short": "{label} 长度不能少于 {min_length} 个字符",
    "string_too_long": "{label} 长度不能超过 {max_length} 个字符",
    "string_pattern_mismatch": "{label} 格式不正确",
    "literal_error": "{label} 应为以下之一：{expected}",
    "enum": "{label} 应为以下之一：{expected}",
    "int_type": "{label} 应为整数",
    "int_parsing": "{label} 应为整数",
    "int_from_float": "{label} 应为整数，不能带小数",
    "int_parsing_size": "{label} 数值超出允许的范围",
    "float_type": "{label} 应为数字",
    "float_parsing": "{label} 应为数字",
    "finite_number": "{label} 应为有限的数字",
    "decimal_type": "{label} 应为数字",
    "decimal_parsing": "{label} 应为数字",
    "decimal_max_digits": "{label} 的数字位数不能超过 {max_digits} 位",
    "decimal_max_places": "{label} 的小数位数不能超过 {decimal_places} 位",
    "decimal_whole_digits": "{label} 的整数位数不能超过 {whole_digits} 位",
    "greater_than": "{label} 必须大于 {gt}",
    "greater_than_equal": "{label} 不能小于 {ge}",
    "less_than": "{label} 必须小于 {lt}",
    "less_than_equal": "{label} 不能大于 {le}",
    "multiple_of": "{label} 应为 {multiple_of} 的倍数",
    "bool_type": "{label} 应为是或否（true 或 false）",
    "bool_parsing": "{label} 应为是或否（true 或 false）",
    "json_type": "{label} 应为 JSON 文本",
    "model_type": "{label} 应为对象",
    "model_attributes_type": "{label} 应为对象",
    "dataclass_type": "{label} 应为对象",
    "dict_type": "{label} 应为对象",
    "mapping_type": "{label} 应为对象",
    "list_type": "{label} 应为列表",
    "tuple_type": "{label} 应为列表",
    "set_type": "{label} 应为列表",
    "frozen_set_type": "{label} 应为列表",
    "iterable_type": "{label} 应为列表",
    "set_item_not_hashable": "{label} 中含有不能比较的项",
    "too_short": "{label} 至少需要 {min_length} 项",
    "too_long": "{label} 最多只能有 {max_length} 项",
    "bytes_type": "{label} 应为文件内容",
    "bytes_too_short": "{label} 不能少于 {min_length} 字节",
    "bytes_too_long": "{label} 不能超过 {max_length} 字节",
    "uuid_type": "{label} 格式不正确（应为 UUID）",
    "uuid_parsing": "{label} 格式不正确（应为 UUID）",
    "uuid_version": "{label} 格式不正确（UUID 版本不符）",
    "date_type": "{label} 应为日期（如 2025-01-31）",
    "date_parsing": "{label} 不是有效的日期（如 2025-01-31）",
    "date_from_datetime_parsing": "{label} 不是有效的日期（如 2025-01-31）",
    "date_from_datetime_inexact": "{label} 应为日期，不能带时间",
    "date_past": "{label} 应为今天以前的日期",
    "date_future": "{label} 应为今天以后的日期",
    "datetime_type": "{label} 应为日期时间（如 2025-01-31T09:00:00+08:00）",
    "datetime_parsing": "{label} 不是有效的日期时间（如 2025-01-31T09:00:00+08:00）",
    "datetime_from_date_parsing": "{label} 不是有效的日期时间（如 2025-01-31T09:00:00+08:00）",
    "datetime_object_invalid": "{label} 不是有效的日期时间",
    "datetime_past": "{label} 应为过去的时间",
    "datetime_future": "{label} 应为将来的时间",
    "timezone_aware": "{label} 须带时区（如 +08:00）",
    "timezone_naive": "{label} 不能带时区",
    "timezone_offset": "{label} 的时区不正确",
    "time_type": "{label} 应为时间（如 09:30）",
    "time_parsing": "{label} 不是有效的时间（如 09:30）",
    "time_delta_type": "{label} 应为时长",
    "time_delta_parsing": "{label} 不是有效的时长",
    "url_type": "{label} 不是有效的网址",
    "url_parsing": "{label} 不是有效的网址",
    "url_syntax_violation": "{label} 不是有效的网址",
    "url_too_long": "{label} 网址过长（最多 {max_length} 个字符）",
    "url_scheme": "{label} 的网址协议不正确",
    "ip_any_address": "{label} 不是有效的 IP 地址",
    "ip_v4_address": "{label} 不是有效的 IPv4 地址",
    "ip_v6_address": "{label} 不是有效的 IPv6 地址",
    "ip_any_network": "{label} 不是有效的网段",
    "ip_v4_network": "{label} 不是有效的 IPv4 网段",
    "ip_v6_network": "{label} 不是有效的 IPv6 网段",
    "ip_any_interface": "{label} 不是有效的网络接口地址",
    "none_required": "{label} 应为空",
    "union_tag_invalid": "{label} 的类型 {tag} 不是可接受的值",
    "union_tag_not_found": "{label} 缺少类型字段 {discriminator}",
    "frozen_field": "{label} 不可修改",
    "frozen_instance": "{label} 不可修改",
    "is_instance_of": "{label} 的类型不正确",
    "is_subclass_of": "{label} 的类型不正确",
}
FALLBACK = "{label} 的值不正确"
WHOLE_BODY = "请求内容"


class _Ctx(string.Formatter):
    """``str.format`` that leaves an unknown placeholder empty instead of failing."""

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: typing.Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), "")


_format = _Ctx().format


def _plain(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _choices(annotation: Any, expected: str) -> str:
    """The allowed values, from the field's type when known, else from pydantic's ``expected``."""
    for arg in _members(annotation):
        if typing.get_origin(arg) is typing.Literal:
            return "、".join(_plain(v) for v in typing.get_args(arg))
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return "、".join(_plain(m) for m in arg)
    quoted = re.findall(r"'((?:[^'\\]|\\.)*)'", expected)
    if quoted:
        return "、".join(quoted)
    return "、".join(p.strip() for p in re.split(r",| or ", expected) if p.strip())


def _members(annotation: Any) -> Iterator[Any]:
    """The annotation itself, unwrapped from ``Annotated``; each member of a union."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _members(arg)
    else:
        yield annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in _members(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _item_of(annotation: Any) -> Any:
    """The element type of a list/tuple/set, or the value type of a dict."""
    for arg in _members(annotation):
        origin = typing.get_origin(arg)
        args = typing.get_args(arg)
        if origin in (list, set, frozenset, tuple, Sequence) and args:
            return args[0]
        if origin is dict and len(args) == 2:
            return args[1]
    return None


def _field(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key == name or key == info.alias or key == info.validation_alias:
            return info
    return None


class _Target:
    """Where a loc points: the field (for its title and type) and the names that lead to it."""

    def __init__(self, name: str, info: FieldInfo | None, annotation: Any) -> None:
        # (name or index, the field's info when known) from the outside in.
        self.steps: list[tuple[str | int, FieldInfo | None]] = [(name, info)] if name else []
        self.info = info
        self.annotation = annotation

    def walk(self, parts: Sequence[str | int]) -> None:
        for part in parts:
            if isinstance(part, int):
                self.info, self.annotation = None, _item_of(self.annotation)
                self.steps.append((part, None))
                continue
            model = _model_of(self.annotation)
            if model is not None:
                self.info = _field(model, part)
                self.annotation = self.info.annotation if self.info else None
                self.steps.append((part, self.info))
            elif any(typing.get_origin(a) is dict for a in _members(self.annotation)):
                self.info, self.annotation = None, _item_of(self.annotation)
                self.steps.append((part, None))
            elif self.annotation is None:
                self.steps.append((part, None))
            # else: a union member's tag ("int", "function-after[...]"): the field stays the same

    @property
    def label(self) -> str:
        """The innermost field's title; a titled list's title with the item number; else the path."""
        indices: list[int] = []
        for step, info in reversed(self.steps):
            if isinstance(step, int):
                indices.append(step)
                continue
            if info is not None and info.title:
                return info.title + "".join(f" 第 {i + 1} 项" for i in reversed(indices))
            break
        path = ""
        for step, _ in self.steps:
            path += f"[{step}]" if isinstance(step, int) else (f".{step}" if path else step)
        if not path:
            return WHOLE_BODY
        return path


def _dependants(route: Any) -> Iterator[Any]:
    stack = [getattr(route, "dependant", None)]
    while stack:
        dep = stack.pop()
        if dep is None:
            continue
        yield dep
        stack.extend(dep.dependencies)


def _params(route: Any, source: str) -> list[Any]:
    attr = {"query": "query_params", "path": "path_params", "header": "header_params"}.get(
        source, "cookie_params" if source == "cookie" else "body_params"
    )
    return [p for dep in _dependants(route) for p in getattr(dep, attr, ())]


def _target(route: Any, loc: Sequence[str | int]) -> _Target:
    if not loc:
        return _Target("", None, None)
    source, rest = loc[0], list(loc[1:])
    if route is None or source not in {"body", "query", "path", "header", "cookie"}:
        target = _Target("", None, None)
        target.walk([x for x in loc if x not in {"body", "query", "path", "header", "cookie"}])
        return target
    params = _params(route, str(source))
    if source == "body":
        embedded = getattr(route, "_embed_body_fields", len({p.name for p in params}) > 1)
        if not embedded and params:
            param = params[0]
            target = _Target("", param.field_info, param.field_info.annotation)
            if param.field_info.title:
                target.steps.append(("", param.field_info))
            target.walk(rest)
            return target
    if rest and isinstance(rest[0], str):
        for param in params:
            if rest[0] in (param.alias, param.name):
                target = _Target(rest[0], param.field_info, param.field_info.annotation)
                target.walk(rest[1:])
                return target
            model = _model_of(param.field_info.annotation) if source != "body" else None
            if model is not None and _field(model, rest[0]) is not None:  # a query/header model
                target = _Target("", param.field_info, param.field_info.annotation)
                target.walk(rest)
                return target
    target = _Target("", None, None)
    target.walk(rest)
    return target


def _message(err: dict[str, Any], target: _Target) -> str:
    kind = str(err.get("type", ""))
    ctx = {k: _plain(v) for k, v in (err.get("ctx") or {}).items()}
    label = target.label
    if kind in {"value_error", "assertion_error"}:
        reason = str((err.get("ctx") or {}).get("error", "")) or str(err.get("msg", ""))
        reason = re.sub(r"^(Value|Assertion) error, ", "", reason)
        if CJK.search(reason):
            return f"{label} {reason}"
        if "UploadFile" in reason:
            return f"{label} 应为上传的文件"
        if "email" in reason.lower():
            return f"{label} 不是有效的电子邮箱地址"
        return f"{label} 的值不正确"
    if kind in {"literal_error", "enum"}:
        ctx["expected"] = _choices(target.annotation, ctx.get("expected", ""))
    if kind == "string_too_short" and ctx.get("min_length") == "1":
        return f"{label} 不能为空"
    return _format(TEMPLATES.get(kind, FALLBACK), label=label, **ctx)


def chinese_errors(errors: Sequence[Any], route: Any = None) -> list[dict[str, Any]]:
    """``[{loc, type, msg}]`` with ``msg`` in Chinese, for the route that refused the request."""
    out = []
    for err in errors:
        loc = [x if isinstance(x, int) else str(x) for x in err.get("loc", ())]
        try:
            target = _target(route, loc)
        except Exception:  # a label is a nicety; the message must still be Chinese
            target = _Target(str(loc[-1]) if len(loc) > 1 else "", None, None)
        try:
            msg = _message(err, target)
        except Exception:
            msg = FALLBACK.format(label=target.label)
        out.append({"loc": [str(x) for x in loc], "type": err.get("type"), "msg": msg})
    return out
