"""Development-only protocol sandboxes of the mini-program platforms (not shipped in the wheel).

``wechat``: the WeChat server API; ``alipay``: Alipay's OAuth gateway; ``dev``: both served by the
api itself in development (the component's lazy sandbox builders import it).
"""
