"""One check at the boundary: no control characters in any text a request carries.

PostgreSQL refuses NUL in text (``invalid byte sequence for encoding "UTF8": 0x00``) and a lone
UTF-16 surrogate cannot be encoded at all, so such input used to surface as a 500 deep inside a
query; other control characters are stored silently and shown back to staff. This middleware
answers 422 ``app.invalid_characters`` before any route, dependency or database sees the request.

What is checked, as the application will see it (percent-decoded, JSON-unescaped):

- the path and every query-string name and value;
- JSON bodies (``application/json``, ``application/*+json``): every key and string value, at any depth;
- form bodies (``application/x-www-form-urlencoded``): every name and value;
- multipart bodies: every part name, file name and non-file field value. File contents are bytes,
  not text, and are left alone.

Refused: C0 controls except tab, line feed and carriage return; DEL; C1 controls (U+0080-U+009F);
lone surrogates (U+D800-U+DFFF, only reachable through JSON ``\\uD800`` escapes).

Cost: requests without a body pay one regular-expression search over the path and one over the
query string (parsed only when it holds a ``%``). A JSON body is scanned once as bytes for anything
that could decode to a refused character (an escape such as ``\\u0000``, a raw control byte, the
UTF-8 form of a C1 control or a surrogate); only then is it parsed, to name the field. Bodies the
check reads are buffered (up to the size limits the request-context middleware enforces outside
this one) and replayed to the application unchanged.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app_api.core.errors import PROBLEM_JSON, InvalidCharacters
from app_api.core.logging import request_id_var

# Characters no text input may hold (see the module docstring).
REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# Fast paths: C-speed scans that answer "certainly clean" for almost every request.
#
# Percent escapes that decode to a refused character (Python's unquote decodes escapes as UTF-8
# with replacement, so a C1 control can only come from %C2%80-%C2%9F and no surrogate can come).
_PERCENT_SUSPECT = re.compile(r"%(?:0[0-8bBcCeEfF]|1[0-9a-fA-F]|7[fF]|[cC]2%[89][0-9a-fA-F])")
# Raw bytes that may belong to a refused character in a JSON body: C0 controls other than JSON
# whitespace, DEL, and the lead bytes of UTF-8 C1 controls (\xc2) and surrogates (\xed; json.loads
# decodes bytes with "surrogatepass").
_JSON_RAW_SUSPECT = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2, 0xED])
_JSON_RAW_CLEAN = bytes(b for b in range(256) if b not in _JSON_RAW_SUSPECT)
_JSON_RAW_EXACT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]|\xed[\xa0-\xbf]")
# \u escapes of a control (tab, LF and CR excepted) or of a surrogate; a surrogate is refused only
# when it is not half of a pair (escaped emoji are common: Python's json.dumps escapes them).
_ESCAPED_CONTROL = re.compile(rb"\\u00(?:0[0-8bcefBCEF]|1[0-9a-fA-F]|7[fF]|[89][0-9a-fA-F])")
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPED_PAIR = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _json_suspect(body: bytes) -> bool:
    """Whether ``body`` may decode to a refused character (false positives only cost a parse)."""
    if body.translate(None, _JSON_RAW_CLEAN) and _JSON_RAW_EXACT.search(body):
        return True
    # Substring tests first: escaped CJK text (\\u4e2d...) holds neither "\\u00" nor "\\ud".
    if b"\\u00" in body and _ESCAPED_CONTROL.search(body):
        return True
    if b"\\ud" not in body and b"\\uD" not in body:
        return False
    return _ESCAPED_SURROGATE.search(_ESCAPED_PAIR.sub(b"", body)) is not None


# Scope key set when the client disconnected before its body was read (no answer was sent).
CLIENT_GONE = "wojia.client_gone"
# At most this many problems are listed in one answer.
MAX_PROBLEMS = 20
# Starlette refuses larger non-file multipart fields itself; there is no need to look further.
MAX_FIELD_BYTES = 1024 * 1024

Loc = list[str | int]


def _describe(char: str) -> str:
    point = ord(char)
    if 0xD800 <= point <= 0xDFFF:
        return f"含有无效的字符（U+{point:04X}）"
    return f"含有不允许的控制字符（U+{point:04X}）"


def _problem(loc: Loc, text: str, label: str | None = None) -> dict[str, Any] | None:
    found = REFUSED.search(text)
    if found is None:
        return None
    if label is None:
        named = [x for x in loc[1:] if isinstance(x, str)]
        label = "请求地址" if loc[0] == "path" else (named[-1] if named else "提交的内容")
    if REFUSED.search(label):  # a field name holding the character itself: do not echo it
        label = "字段名"
    return {"loc": loc, "type": "invalid_character", "msg": f"{label} {_describe(found.group())}"}


def path_problems(path: str) -> list[dict[str, Any]]:
    found = _problem(["path"], path)
    return [found] if found else []


def pairs_problems(raw: bytes, where: str) -> list[dict[str, Any]]:
    """A query string or an urlencoded form body, decoded exactly as Starlette decodes it."""
    text = raw.decode("latin-1")
    if not _PERCENT_SUSPECT.search(text) and not REFUSED.search(text):
        return []
    problems: list[dict[str, Any]] = []
    for name, value in parse_qsl(text, keep_blank_values=True):
        found = _problem([where, name], name) or _problem([where, name], value)
        if found:
            problems.append(found)
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


def json_problems(body: bytes) -> list[dict[str, Any]]:
    if not _json_suspect(body):
        return []
    try:
        data = json.loads(body)
    except Exception:  # not JSON, or nested too deep: the route answers 400 itself
        return []
    problems: list[dict[str, Any]] = []
    stack: list[tuple[Loc, Any]] = [(["body"], data)]
    while stack and len(problems) < MAX_PROBLEMS:
        loc, value = stack.pop()
        if isinstance(value, str):
            found = _problem(loc, value)
            if found:
                problems.append(found)
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                found = _problem([*loc, key], key)
                if found:
                    problems.append(found)
                else:
                    stack.append(([*loc, key], item))
        elif isinstance(value, list):
            stack.extend(([*loc, i], item) for i, item in reversed(list(enumerate(value))))
    return problems


def _decode(raw: bytes | bytearray, charset: str) -> str:
    # As Starlette's multipart parser does: the declared charset, else Latin-1.
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


def multipart_problems(body: bytes, content_type: bytes) -> list[dict[str, Any]]:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        return []
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    problems: list[dict[str, Any]] = []
    header_name = bytearray()
    header_value = bytearray()
    part: dict[str, Any] = {}

    def on_part_begin() -> None:
        part.clear()
        part.update(disposition=b"", name="", file=False, data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        if bytes(header_name).lower() == b"content-disposition":
            part["disposition"] = bytes(header_value)
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, options = parse_options_header(part["disposition"])
        name = _decode(options.get(b"name", b""), charset)
        part["name"] = name
        found = _problem(["body", name], name)
        if found:
            problems.append(found)
        if b"filename" in options:
            part["file"] = True
            filename = _decode(options[b"filename"], charset)
            found = _problem(["body", name, "filename"], filename, label="文件名")
            if found:
                problems.append(found)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        buf: bytearray = part["data"]
        if not part["file"] and len(buf) <= MAX_FIELD_BYTES:
            buf.extend(data[start:end])

    def on_part_end() -> None:
        if not part["file"]:
            found = _problem(["body", part["name"]], _decode(part["data"], charset))
            if found:
                problems.append(found)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    # Malformed multipart: Starlette answers 400 itself; report what was found before the fault.
    with contextlib.suppress(Exception):
        parser.write(body)
        parser.finalize()
    return problems[:MAX_PROBLEMS]


def _body_kind(content_type: bytes) -> str | None:
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json")):
        return "json"
    if media == b"application/x-www-form-urlencoded":
        return "form"
    if media == b"multipart/form-data":
        return "multipart"
    return None


class InputGuardMiddleware:
    """Answers 422 ``app.invalid_characters`` for a request carrying control characters in text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problems = path_problems(scope["path"]) or pairs_problems(scope.get("query_string", b""), "query")
        if problems:
            await self._refuse(scope, send, problems)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
        kind = _body_kind(content_type) if content_type else None
        if kind is None:
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before the body ended: nobody to answer, and a truncated
                # body must not reach a route as if it were whole (metrics count it as 499).
                scope[CLIENT_GONE] = True
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        if kind == "json":
            problems = json_problems(body)
        elif kind == "form":
            problems = pairs_problems(body, "body")
        else:
            problems = multipart_problems(body, content_type)
        if problems:
            await self._refuse(scope, send, problems)
            return

        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        del body

        async def receive_replayed() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        await self.app(scope, receive_replayed, send)

    async def _refuse(self, scope: Scope, send: Send, problems: list[dict[str, Any]]) -> None:
        err = InvalidCharacters(problems[0]["msg"], errors=problems)
        problem = err.to_problem(instance=quote(scope["path"]), request_id=request_id_var.get())
        payload = json.dumps(problem, ensure_ascii=False).encode()
        await send(
            {
                "type": "http.response.start",
                "status": err.status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
