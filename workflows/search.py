"""Typed keys of the custom search attributes the call workflows keep up to date."""

from temporalio.common import SearchAttributeKey

from core import models as m

CALL_STATUS = SearchAttributeKey.for_keyword(m.SA_CALL_STATUS)
RECORDING_STATUS = SearchAttributeKey.for_keyword(m.SA_RECORDING_STATUS)
ROOM_NAME = SearchAttributeKey.for_keyword(m.SA_ROOM_NAME)
CUSTOMER_NAME = SearchAttributeKey.for_keyword(m.SA_CUSTOMER_NAME)
SILENCE_ALERTS = SearchAttributeKey.for_int(m.SA_SILENCE_ALERTS)
