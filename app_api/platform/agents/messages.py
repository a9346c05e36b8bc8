"""What agents' work tells residents: the notification templates (registered on import)."""

from app_api.platform import notify

MANDATE_CREATED = "agents.mandate_created"
APPLICATION_FILED = "agents.application_filed"
MANDATE_WITHDRAWN = "agents.mandate_withdrawn"

notify.register_template(
    MANDATE_CREATED,
    "$station代办员已登记您的代办授权（$scopes），有效期至$until。如非您本人同意，请在“我的-授权管理”中撤回。",
    wechat_fields={"thing1": "$station", "thing2": "$scopes", "time3": "$until"},
)
notify.register_template(
    APPLICATION_FILED,
    "$station代办员已为您提交“$item”申请，申请编号$number。",
    wechat_fields={"thing1": "$item", "character_string2": "$number", "thing3": "$station"},
)
notify.register_template(
    MANDATE_WITHDRAWN,
    "您给$station代办员的代办授权已撤回，代办员不能再为您办理事项。",
)
