from __future__ import annotations

from pydantic import BaseModel, Field


class RealNameIn(BaseModel):
    name: str = Field(min_length=2, max_length=30, description="姓名（与身份证一致）")
    id_number: str = Field(min_length=15, max_length=20, description="18位居民身份证号码")
    agree: bool = Field(description="同意向城市数据中心核验")


class ConsentIn(BaseModel):
    agree: bool = Field(description="已阅读并同意人脸信息处理说明")


class ChallengeIn(BaseModel):
    purpose: str = Field(default="identity.l3", max_length=60, description="认证用途，如 loan.apply")


class AttestationIn(BaseModel):
    resident_phone: str = Field(pattern=r"^1\d{10}$")
    id_number: str = Field(min_length=15, max_length=20)
    name: str = Field(min_length=2, max_length=30)
    document: str = Field(default="resident_id_card", pattern=r"^(resident_id_card|temporary_id_card)$")
    resident_agreed: bool
