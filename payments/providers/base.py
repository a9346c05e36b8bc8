"""The narrow contract every payment provider implements.

Six operations (create, parse_notification, query, close, refund, download_bill) with typed results.
Amounts are always integer fen; the provider translates to yuan strings or fen integers as its
protocol needs. Providers wrap blocking SDKs (wechatpy, wechatpayv3, the Alipay SDK) and run them off
the event loop, so every operation is a coroutine.

A provider never touches the ledger. It tells the caller what the provider says (a verified
notification, the state of a trade), and the ledger decides what that means.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable


class ProviderName(enum.StrEnum):
    WECHAT_V2 = "wechat_v2"
    WECHAT_V3 = "wechat_v3"
    ALIPAY = "alipay"


class Channel(enum.StrEnum):
    """Where the resident pays: inside a mini-program (JSAPI) or in the native app (APP)."""

    MINIPROGRAM = "miniprogram"
    APP = "app"


class TradeState(enum.StrEnum):
    """A provider's view of a trade, normalised across providers."""

    NOT_PAID = "not_paid"  # created, waiting for the payer (WeChat NOTPAY, Alipay WAIT_BUYER_PAY)
    PAYING = "paying"  # the payer is entering a password (WeChat USERPAYING)
    PAID = "paid"  # money received (WeChat SUCCESS, Alipay TRADE_SUCCESS / TRADE_FINISHED)
    REFUNDED = "refunded"  # paid and (some) refund happened (WeChat REFUND)
    CLOSED = "closed"  # closed unpaid, or fully refunded at Alipay (TRADE_CLOSED)
    FAILED = "failed"  # WeChat PAYERROR / REVOKED
    NOT_FOUND = "not_found"  # the provider has never heard of it


class RefundState(enum.StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # refused or failed: the money stayed with the merchant
    CLOSED = "closed"  # closed unpaid (WeChat REFUNDCLOSE / CLOSED): the money stayed with the merchant
    # The money left the merchant and did not reach the payer (WeChat v2 CHANGE, v3 ABNORMAL: the
    # payer's card was cancelled or frozen). The provider still counts it as refunded; finance
    # handles it by hand at the provider, after which it turns SUCCESS (or CLOSED).
    ABNORMAL = "abnormal"


class NotificationKind(enum.StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


# ---------------------------------------------------------------------------------------------
# Errors raised by providers. They are plain exceptions (not AppError): the notify endpoint turns
# them into each provider's documented failure answer, the service into domain errors.


class ProviderError(Exception):
    """The provider refused a request or answered something we cannot trust."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class InvalidNotification(Exception):
    """A notification that must not be credited: bad signature, malformed, stale, wrong merchant."""

    reason: ClassVar[str] = "invalid"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason  # type: ignore[misc]


class MalformedNotification(InvalidNotification):
    reason = "malformed"


class BadSignature(InvalidNotification):
    reason = "bad_signature"


class StaleNotification(InvalidNotification):
    reason = "stale"


class ReplayedNotification(InvalidNotification):
    """Exactly this signed message (same nonce) was seen before: already handled, do nothing again."""

    reason = "replayed"


class ForeignNotification(InvalidNotification):
    """Correctly signed, but for another app id or merchant id than ours."""

    reason = "foreign_merchant"


class BillUnavailable(ProviderError):
    """No bill for that date (yet): WeChat answers "No Bill Exist", Alipay bill not ready."""


class BillIntegrityError(ProviderError):
    """The downloaded bill does not match its hash, is truncated, or cannot be decoded."""


# ---------------------------------------------------------------------------------------------
# Typed requests and results.


@dataclass(frozen=True, slots=True)
class CreatePayment:
    out_trade_no: str
    amount_fen: int
    description: str
    channel: Channel
    notify_url: str
    client_ip: str = "127.0.0.1"
    # WeChat openid (mini-program JSAPI) or Alipay buyer id (mini-program); unused for APP pay.
    payer_id: str | None = None
    expire_at: dt.datetime | None = None
    attach: str | None = None

    def __post_init__(self) -> None:
        if self.amount_fen <= 0:
            raise ValueError("amount_fen must be positive")
        if self.channel is Channel.MINIPROGRAM and not self.payer_id:
            raise ValueError("mini-program payments need the payer's id (openid / buyer id)")


@dataclass(frozen=True, slots=True)
class CreatedPayment:
    provider: ProviderName
    out_trade_no: str
    # What the mini-program or app hands to the wallet (wx.requestPayment / my.tradePay / APP SDK).
    client_params: dict[str, str]
    prepay_id: str | None = None  # WeChat prepay id, or Alipay trade_no for mini-program pay


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified notification, normalised. ``raw`` is the decoded provider payload."""

    provider: ProviderName
    kind: NotificationKind
    out_trade_no: str
    transaction_id: str  # provider transaction id: the dedupe key with the provider name
    app_id: str
    merchant_id: str
    amount_fen: int  # order total
    trade_state: TradeState
    paid_at: dt.datetime | None = None
    out_refund_no: str | None = None
    refund_id: str | None = None
    refund_fen: int | None = None
    refund_state: RefundState | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # The signed message's replay-guard key (WeChat Pay v3), remembered once the note is applied.
    replay_key: str | None = None

    @property
    def dedupe_key(self) -> str:
        """One stored notification per provider transaction, and per refund and state for refunds: a
        refund may be told twice with news (WeChat: ABNORMAL, then SUCCESS once finance handled it)."""
        if self.kind is NotificationKind.REFUND:
            state = self.refund_state.value if self.refund_state else ""
            return f"{self.provider}:refund:{self.refund_id or self.out_refund_no}:{state}"
        return f"{self.provider}:pay:{self.transaction_id}"


@dataclass(frozen=True, slots=True)
class TradeStatus:
    provider: ProviderName
    out_trade_no: str
    state: TradeState
    transaction_id: str | None = None
    amount_fen: int | None = None
    paid_at: dt.datetime | None = None
    app_id: str | None = None
    merchant_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundRequest:
    out_trade_no: str
    out_refund_no: str
    total_fen: int
    refund_fen: int
    reason: str | None = None
    notify_url: str | None = None
    transaction_id: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.refund_fen <= self.total_fen:
            raise ValueError("refund_fen must be positive and at most the order total")


@dataclass(frozen=True, slots=True)
class RefundResult:
    provider: ProviderName
    out_trade_no: str
    out_refund_no: str
    refund_fen: int
    state: RefundState
    refund_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class BillFormat(enum.StrEnum):
    WECHAT_CSV = "wechat_csv"  # v2 and (decompressed) v3 trade bills: backtick cells, summary lines
    ALIPAY_ZIP = "alipay_zip"  # zip of GBK CSVs (detail + summary)


@dataclass(frozen=True, slots=True)
class BillFile:
    """A downloaded, integrity-checked daily bill in the provider's own format."""

    provider: ProviderName
    bill_date: dt.date
    format: BillFormat
    content: bytes  # WeChat: UTF-8 CSV text (decompressed for v3); Alipay: the zip as downloaded
    sha1: str | None = None  # the hash the provider announced and we checked (v3)


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer a provider documents for its notify callbacks."""

    status_code: int
    body: bytes
    media_type: str


# ---------------------------------------------------------------------------------------------
# Replay protection for notifications that carry a nonce (WeChat Pay v3). Verify first, remember
# second: a signed message is looked up before it is decoded, and remembered only once it has been
# verified, decrypted, checked and applied (``PaymentProvider.applied``). A message whose processing
# failed is not remembered, so the provider's identical retry is applied; identical copies arriving
# together all reach the ledger, which stores and applies a notification once per transaction.


class ReplayGuard(Protocol):
    async def seen(self, key: str) -> bool:
        """True if ``key`` was remembered and has not expired."""
        ...

    async def remember(self, key: str, ttl_s: int) -> None:
        """Remember ``key`` for ``ttl_s`` seconds."""
        ...


class MemoryReplayGuard:
    """In-process guard: one process, and tests (the app uses ``registry.PlatformReplayGuard``)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        # A thread lock, not an asyncio one: the guard may be shared by servers on several loops.
        self._lock = threading.Lock()

    async def seen(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            expires = self._seen.get(key)
            return expires is not None and expires > now

    async def remember(self, key: str, ttl_s: int) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
            self._seen[key] = now + ttl_s


# ---------------------------------------------------------------------------------------------


@runtime_checkable
class PaymentProvider(Protocol):
    """What the ledger needs from a provider. Nothing more."""

    name: ProviderName
    app_id: str
    merchant_id: str

    async def create(self, request: CreatePayment) -> CreatedPayment:
        """Place the order at the provider and return what the client needs to pay."""
        ...

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and decode a notification, or raise :class:`InvalidNotification`.

        Raises :class:`ForeignNotification` for a correctly signed message addressed to another
        app or merchant. Amount checks against the order are the ledger's job.
        """
        ...

    async def query(self, out_trade_no: str) -> TradeStatus:
        """Ask the provider for the trade's current state (verified answer)."""
        ...

    async def close(self, out_trade_no: str) -> None:
        """Close an unpaid trade so it can no longer be paid. Closing an unknown trade is fine."""
        ...

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Request a (partial) refund; the same ``out_refund_no`` never refunds twice."""
        ...

    async def download_bill(self, bill_date: dt.date) -> BillFile:
        """Download and integrity-check the daily trade bill for a China-time date."""
        ...

    def acknowledge(self, ok: bool, message: str = "") -> Ack:
        """The provider's documented answer to a notification (success stops its retries)."""
        ...

    async def applied(self, note: Notification) -> None:
        """``note`` has been applied and committed: an exact replay of it may now be refused."""
        ...


async def run_blocking(func: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking SDK call in a worker thread."""
    return await asyncio.to_thread(func, *args, **kwargs)
