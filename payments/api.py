"""What a column may use from payments; columns import this module and nothing else of payments.

A column opens an order for one of its purposes (``create_order``), places it at the provider
(``start_payment``, whose ``client_params`` go to the wallet), may refund it (``request_refund``),
and hears exactly once that a purpose was paid through a handler registered with ``on_paid``
(see :mod:`payments.hooks`).
"""

from __future__ import annotations

from payments.hooks import PaidHandler, PaidPurpose, on_paid
from payments.models import PaymentOrder, PaymentRefund
from payments.orders import PaymentStart, create_order, start_payment
from payments.refunds import request_refund

__all__ = [
    "PaidHandler",
    "PaidPurpose",
    "PaymentOrder",
    "PaymentRefund",
    "PaymentStart",
    "create_order",
    "on_paid",
    "request_refund",
    "start_payment",
]
