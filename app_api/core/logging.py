"""JSON logs with the request id; phone and citizen ID numbers masked wherever they appear."""

from __future__ import annotations

import contextvars
import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# 18-digit citizen ID numbers (last may be X) and mainland mobile numbers.
_ID_RE = re.compile(r"(?<!\d)(\d{3})\d{11}(\d{3}[\dXx])(?!\d)")
_PHONE_RE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_text(text: str) -> str:
    text = _ID_RE.sub(lambda m: f"{m.group(1)}***********{m.group(2)}", text)
    return _PHONE_RE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


class MaskingFilter(logging.Filter):
    """Masks personal numbers in the message and in string extras, and adds the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key not in {"msg", "name", "levelname", "pathname", "filename"}:
                record.__dict__[key] = mask_text(value)
        return True


def configure_logging(*, json: bool = True, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json:
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s", timestamp=True)
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = True
