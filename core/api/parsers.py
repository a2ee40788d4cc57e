from collections.abc import Iterable
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32  # an order body is 3 levels deep; no request of this API needs more than 4


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with a nesting limit: a body nested deeper than MAX_DEPTH levels is
    refused as malformed (400), where Python's own recursion limit would end the request in a
    500 (a 2 KB body of nested brackets is enough)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            data = None
        else:
            if not _deeper_than(data, MAX_DEPTH):
                return data
        raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.")


def _deeper_than(data, limit: int) -> bool:
    """Whether the parsed JSON nests more than `limit` arrays and objects (without recursion)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        children: Iterable[Any]
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False
