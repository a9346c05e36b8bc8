"""Development-only stand-ins for the accounts' external systems (left out of the built wheel).

``sms_inbox``: what the SMS sandbox gateway recorded, served at ``/api/v1/dev/sms``.
"""
