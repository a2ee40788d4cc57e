from django.http import Http404

from core.api.filters import past_int64


# For viewsets looked up by a BIGINT id: an id past the 64-bit range names nothing, so it is a
# 404 before the database is asked (SQLite cannot bind it: an OverflowError, a 500). Anything
# not an integer is left to DRF (a 404 as well). A comment, not a docstring: the API's schema
# would describe a viewset without a docstring of its own by this one.
class Int64LookupMixin:
    def get_object(self):
        if past_int64(self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)):
            raise Http404
        return super().get_object()
