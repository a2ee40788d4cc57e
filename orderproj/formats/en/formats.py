"""Date formats for English (settings.FORMAT_MODULE_PATH), used wherever the admin shows a
date or time. Operators compare events seconds apart (an order's log rows, a sync run's
start), so every time carries its seconds, in one sortable, compact form; the other formats
are Django's."""

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
