from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class DefaultPagination(PageNumberPagination):
    """Pages of `PAGE_SIZE`; `page_size` asks for another size, a whole number from 1 (a
    larger one is cut to `max_page_size`). Any other `page_size`, or a `page` that is not a
    whole number from 1 (or `last`), is a 400 naming it, where DRF would quietly use the
    default size or answer 404; a page past the end stays DRF's 404."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        asked = request.query_params.get(self.page_size_query_param)
        if asked is None:
            return self.page_size
        try:
            size = int(asked)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError(
                {
                    self.page_size_query_param: [
                        f"Enter a whole number, 1 or more (more than {self.max_page_size} is "
                        f"cut to {self.max_page_size})."
                    ]
                }
            )
        return min(size, self.max_page_size)

    def paginate_queryset(self, queryset, request, view=None):
        asked = request.query_params.get(self.page_query_param)
        if asked is not None and asked not in self.last_page_strings:
            try:
                valid = int(asked) >= 1
            except ValueError:
                valid = False
            if not valid:
                raise ValidationError(
                    {self.page_query_param: ["Enter a whole number, 1 or more, or `last`."]}
                )
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = (
                    f"Results per page, 1 or more; more than {self.max_page_size} is cut to "
                    f"{self.max_page_size}."
                )
        return parameters
