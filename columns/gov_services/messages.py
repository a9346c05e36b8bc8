"""The column's notification texts (registered with ``app_api.platform.notify`` on import) and
their template names, so every sender refers to a template that is known to be registered."""

from __future__ import annotations

from app_api.platform import notify

SUBMITTED = "gov.submitted"
STATUS_CHANGED = "gov.status_changed"
SUPPLEMENT = "gov.supplement"
BUNDLE_SUBMITTED = "gov.bundle_submitted"
POSTED = "gov.posted"
WARNING = "gov.warning"
FOLLOW_UP = "gov.follow_up"
FOLLOW_UP_ANSWERED = "gov.follow_up_answered"

notify.register_template(SUBMITTED, "您申请的“$item”已提交（申请编号$number），我们将在$days个工作日内办结。")
notify.register_template(
    STATUS_CHANGED,
    "您申请的“$item”（编号$number）$status。$note",
    wechat_fields={"thing1": "$item", "phrase2": "$status", "character_string3": "$number"},
)
notify.register_template(
    SUPPLEMENT, "您申请的“$item”（编号$number）需要补正材料：$reason。补正期间不计入办理时限。"
)
notify.register_template(
    BUNDLE_SUBMITTED,
    "您的“$bundle”已提交（编号$number），共$count个事项，由$departments个部门办理，全部办结后结果一次送达；"
    "需要您补正材料或缴费时会另行通知。",
)
notify.register_template(POSTED, "您申请的“$item”办理结果已免费寄出，邮件号$tracking_no，请注意查收。")
notify.register_template(
    WARNING,
    "【电子监察$level】$department 申请$number（$item）已用$elapsed个工作日，时限$limit个工作日。",
    category="gov_supervision",
)
notify.register_template(FOLLOW_UP, "您对“$item”的评价已收到，$department 将在3个工作日内回访。")
notify.register_template(FOLLOW_UP_ANSWERED, "$department 对您的评价回复：$answer")
