"""我要贷款: the loans marketplace. Institutions publish products; residents and small businesses
apply (L3 step-up, consent to share named data with that institution only); the institution's
officers review, approve and disburse."""

from app_api.platform.column import Column

column = Column.from_package(__name__)
