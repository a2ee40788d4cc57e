import copy

from rest_framework import serializers


class BuiltOnceModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose fields are worked out from the model once per class and copied
    for each instance. DRF works them out again for every serializer (for a list, once per
    row of each nested serializer), which costs a create more CPU than its database work.
    For serializers whose fields depend only on the class (not on the instance or the
    request's context)."""

    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_fields_built_once")
        if built is None:
            built = super().get_fields()
            cls._fields_built_once = built
        return copy.deepcopy(built)
