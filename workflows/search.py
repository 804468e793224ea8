"""Typed keys of the custom search attributes the call and callback workflows keep up to date."""

from temporalio.common import SearchAttributeKey

from core import callbacks as cb
from core import models as m

CALL_STATUS = SearchAttributeKey.for_keyword(m.SA_CALL_STATUS)
RECORDING_STATUS = SearchAttributeKey.for_keyword(m.SA_RECORDING_STATUS)
ROOM_NAME = SearchAttributeKey.for_keyword(m.SA_ROOM_NAME)
CUSTOMER_NAME = SearchAttributeKey.for_keyword(m.SA_CUSTOMER_NAME)
SILENCE_ALERTS = SearchAttributeKey.for_int(m.SA_SILENCE_ALERTS)
CALLBACK_STATUS = SearchAttributeKey.for_keyword(cb.SA_CALLBACK_STATUS)
CALLBACK_DUE = SearchAttributeKey.for_datetime(cb.SA_CALLBACK_DUE)
