"""Response bodies of the data center endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field


class DataAccessOut(BaseModel):
    """One read of the resident's records: when, which kind, by whom, for what, for which
    application, on which consent."""

    at: dt.datetime
    record_type: str
    record_name: str = Field(description="读取的信息类别（中文）")
    purpose: str
    purpose_name: str = Field(description="用途（中文）")
    consent_id: str | None
    fields: list[str]
    by_self: bool
    found: bool
    actor_kind: str = Field(
        description="resident 本人 / officer 审核人员 / agent 代办员 / institution 金融机构 / "
        "system 系统任务 / account 其他用户 / unknown 早期记录"
    )
    actor: str = Field(description="读取者（按机构与岗位，不含个人信息），如“亳州市公安局 审核人员”")
    department: str | None = Field(default=None, description="审核人员所属部门")
    station: str | None = Field(default=None, description="代办员所属代办点")
    mandate_id: str | None = Field(default=None, description="代办所依据的委托")
    application_ref: str | None = Field(default=None, description="所办事项的办件编号")


class DataAccessList(BaseModel):
    items: list[DataAccessOut]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class CertificateOut(BaseModel):
    """One e-certificate in the resident's 证照夹."""

    id: str
    cert_type: str
    cert_no: str
    title: str
    issuer: str
    issued_on: dt.date
    valid_until: dt.date | None = Field(description="最后有效日（含）；null 为长期有效")
    status: Literal["pending", "valid", "revoked", "expired"]
    status_text: str


class CertificateList(BaseModel):
    items: list[CertificateOut]


class VerifyCode(BaseModel):
    code: str = Field(description="核验码（可生成二维码），柜台通过 /api/v1/certificates/verify 核验")
    expires_at: dt.datetime


class ShareOut(BaseModel):
    id: str
    grantee_kind: str
    grantee_id: str
    purpose: str
    granted_at: dt.datetime
    expires_at: dt.datetime | None
    withdrawn_at: dt.datetime | None
    status: Literal["active", "expired", "revoked"]


class ShareList(BaseModel):
    items: list[ShareOut]


class CertificateDetail(CertificateOut):
    data: dict[str, Any]
    verification: VerifyCode | None = Field(description="仅有效证照提供核验码")
    shares: list[ShareOut]


class ShareIn(BaseModel):
    grantee_kind: Literal["department", "bank"] = Field(title="共享对象类型")
    grantee_id: str = Field(title="共享对象", min_length=1, max_length=50)
    purpose: str = Field(title="用途", min_length=2, max_length=200)
    expires_at: dt.datetime = Field(title="共享截止时间")


class VerifyResult(BaseModel):
    """What a counter learns: the status and a masked summary, nothing more."""

    status: Literal["pending", "valid", "revoked", "expired"]
    status_text: str
    title: str
    issuer: str
    cert_no: str
    holder_id_number: str | None
    issued_on: dt.date
    valid_until: dt.date | None


class SharedCertificate(BaseModel):
    """A certificate as the grantee's officer sees it through a live share."""

    share_id: str
    purpose: str
    expires_at: dt.datetime | None
    certificate: CertificateOut
    data: dict[str, Any]


class RevokeIn(BaseModel):
    reason: str = Field(title="撤销原因", min_length=2, max_length=200)
