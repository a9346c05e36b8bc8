"""What identity asks consent for and checks for: the purposes, their scopes, the consent texts."""

from __future__ import annotations

import re

from identity import errors

REAL_NAME_PURPOSE = "identity.real_name"
REAL_NAME_SCOPES = ["population.basic"]
FACE_PURPOSE = "identity.face"
FACE_SCOPES = ["face.id_photo", "face.template", "population.basic", "population.photo"]
ATTESTATION_PURPOSE = "identity.agent_attestation"
L3_PURPOSE = "identity.l3"
# Step-up purposes are named by the package that needs them: "loan.apply", "fund.withdraw", ...
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_]{1,29}\.[a-z][a-z0-9_.]{1,29}$")

FACE_CONSENT_TEXT = (
    "我同意我家平台为核验本人身份采集和处理我的人脸信息：从城市数据中心调取我的身份证照片，"
    "与我现场拍摄的画面比对；比对所用的人脸特征和身份证照片加密保存，仅用于今后的身份核验。"
    "拍摄的画面不保存。我可以随时撤回同意，撤回后上述人脸数据立即删除。"
)
REAL_NAME_CONSENT_TEXT = "我同意我家平台向城市数据中心核验我的姓名和身份证号码，用于实名认证。"
ATTESTATION_CONSENT_TEXT = "我同意代办员在服务站现场核验我的身份证件，用于提升实名认证等级。"


def check_purpose(purpose: str) -> str:
    if purpose != L3_PURPOSE and not PURPOSE_RE.match(purpose):
        raise errors.PurposeInvalid(f"用途 {purpose[:60]!r} 不符合“包名.动作”格式", purpose=purpose[:60])
    return purpose
