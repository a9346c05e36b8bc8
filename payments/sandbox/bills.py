"""Daily bills in each provider's real format, rendered from :class:`BillRow` lists.

- WeChat Pay (v2 ``downloadbill`` and v3 ``tradebill``, type ALL): a UTF-8 CSV whose every cell starts
  with a backtick, amounts in yuan, then two summary lines (a header starting 总交易单数 and the totals).
  Refund rows repeat the order amount in 应结订单金额; the summary sums the SUCCESS rows only.
  v3 serves the same text gzip-compressed, announcing the SHA1 of the uncompressed text.
- Alipay (``alipay.data.dataservice.bill.downloadurl.query``, bill_type trade): a zip holding two
  GBK-encoded CSVs, ``<pid>_<yyyymmdd>_业务明细.csv`` (comment header lines starting with ``#``, the
  detail rows, comment totals) and ``<pid>_<yyyymmdd>_业务明细(汇总).csv``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import zipfile
from collections.abc import Iterable

from app_api.core.clock import CHINA_TZ
from app_api.core.money import fen_to_yuan
from payments.sandbox.common import BillRow

WECHAT_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
WECHAT_SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)


def _fee_yuan(fen: int) -> str:
    # WeChat prints fees with five decimals.
    return fen_to_yuan(fen) + "000"


def wechat_row(row: BillRow) -> str:
    refund = row.status == "REFUND"
    cells = [
        row.traded_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"),
        row.app_id,
        row.mch_id,
        "0",
        "",
        row.transaction_id,
        row.out_trade_no,
        row.payer,
        row.trade_type,
        row.status,
        "OTHERS",
        "CNY",
        fen_to_yuan(row.amount_fen),
        "0.00",
        row.refund_id if refund else "0",
        row.out_refund_no if refund else "0",
        fen_to_yuan(row.refund_fen if refund else 0),
        "0.00",
        "ORIGINAL" if refund else "",
        row.refund_status if refund else "",
        row.body.replace(",", "，"),
        row.attach.replace(",", "，"),
        _fee_yuan(row.fee_fen),
        row.rate,
        fen_to_yuan(row.amount_fen),
        fen_to_yuan(row.refund_fen if refund else 0),
        "",
    ]
    return ",".join("`" + cell for cell in cells)


def wechat_summary(rows: Iterable[BillRow]) -> str:
    count = paid = refunded = fees = 0
    for row in rows:
        count += 1
        fees += row.fee_fen
        if row.status == "SUCCESS":
            paid += row.amount_fen
        else:
            refunded += row.refund_fen
    cells = [
        str(count),
        fen_to_yuan(paid),
        fen_to_yuan(refunded),
        "0.00",
        _fee_yuan(fees),
        fen_to_yuan(paid),
        fen_to_yuan(refunded),
    ]
    return ",".join("`" + cell for cell in cells)


def render_wechat_csv(rows: list[BillRow]) -> str:
    lines = [WECHAT_HEADER, *(wechat_row(r) for r in rows), WECHAT_SUMMARY_HEADER, wechat_summary(rows)]
    return "\r\n".join(lines) + "\r\n"


def render_wechat_v3(rows: list[BillRow]) -> tuple[bytes, str]:
    """(gzip bytes, SHA1 hex of the uncompressed bill)."""
    text = render_wechat_csv(rows).encode("utf-8")
    return gzip.compress(text, compresslevel=6, mtime=0), hashlib.sha1(text).hexdigest()  # noqa: S324


ALIPAY_DETAIL_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)


def alipay_row(row: BillRow) -> str:
    refund = row.status == "REFUND"
    traded = row.traded_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    received = -row.refund_fen if refund else row.amount_fen
    cells = [
        row.transaction_id,
        row.out_trade_no,
        "退款" if refund else "交易",
        row.body.replace(",", "，"),
        traded,
        traded,
        "",
        "",
        "",
        "",
        row.payer,
        fen_to_yuan(row.amount_fen),
        fen_to_yuan(received),
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "",
        "0.00",
        "0.00",
        row.out_refund_no if refund else "",
        # Alipay prints the service fee as a negative number (money it keeps); returned fees positive.
        fen_to_yuan(-row.fee_fen),
        "0.00",
        row.attach.replace(",", "，"),
    ]
    # Real Alipay bills pad cells with tabs; parsers must strip them.
    return ",".join(cell + "\t" if cell and i in (0, 1) else cell for i, cell in enumerate(cells))


def render_alipay_zip(
    pid: str, bill_date: dt.date, rows: list[BillRow], *, exported_at: dt.datetime
) -> bytes:
    ymd = bill_date.strftime("%Y%m%d")
    start = bill_date.strftime("%Y年%m月%d日 00:00:00")
    end = (bill_date + dt.timedelta(days=1)).strftime("%Y年%m月%d日 00:00:00")
    trades = [r for r in rows if r.status == "SUCCESS"]
    refunds = [r for r in rows if r.status == "REFUND"]
    trade_sum = sum(r.amount_fen for r in trades)
    refund_sum = -sum(r.refund_fen for r in refunds)
    fee_sum = -sum(r.fee_fen for r in rows)
    detail_lines = [
        "#支付宝业务明细查询",
        f"#账号：[{pid}]",
        f"#起始日期：[{start}]   终止日期：[{end}]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        ALIPAY_DETAIL_HEADER,
        *(alipay_row(r) for r in rows),
        "#-----------------------------------------业务明细列表结束------------------------------------",
        f"#交易合计：{len(trades)}笔，商家实收：{fen_to_yuan(trade_sum)}元，商家优惠：0.00元",
        f"#退款合计：{len(refunds)}笔，商家实收：{fen_to_yuan(refund_sum)}元，商家优惠：0.00元",
        f"#导出时间：[{exported_at.astimezone(CHINA_TZ).strftime('%Y年%m月%d日 %H:%M:%S')}]",
    ]
    summary_lines = [
        "#支付宝业务汇总查询",
        f"#账号：[{pid}]",
        f"#起始日期：[{start}]   终止日期：[{end}]",
        "#-----------------------------------------业务汇总列表----------------------------------------",
        "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,服务费（元）",
        f"合计,,{len(trades)},{len(refunds)},{fen_to_yuan(trade_sum)},"
        f"{fen_to_yuan(trade_sum + refund_sum)},{fen_to_yuan(fee_sum)}",
        "#-----------------------------------------业务汇总列表结束------------------------------------",
        f"#导出时间：[{exported_at.astimezone(CHINA_TZ).strftime('%Y年%m月%d日 %H:%M:%S')}]",
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{pid}_{ymd}_业务明细.csv", "\r\n".join(detail_lines).encode("gbk"))
        archive.writestr(f"{pid}_{ymd}_业务明细(汇总).csv", "\r\n".join(summary_lines).encode("gbk"))
    return buffer.getvalue()
