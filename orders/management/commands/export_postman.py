"""Write the Postman collection generated from the OpenAPI schema (docs/postman_collection.json
is committed; a test fails when it is not current: run this command and commit the file)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.api.postman import openapi_schema, postman_collection, render

DEFAULT_PATH = Path(settings.BASE_DIR) / "docs" / "postman_collection.json"


class Command(BaseCommand):
    help = "Generate the Postman collection (v2.1) from the API's OpenAPI schema."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; fail if the file differs from what would be written.",
        )

    def handle(self, *args, path: str, check: bool, **options):
        text = render(postman_collection(openapi_schema()))
        target = Path(path)
        if check:
            if not target.is_file() or target.read_text() != text:
                raise CommandError(
                    f"{target} is not current: run `manage.py export_postman` and commit it."
                )
            self.stdout.write(f"{target} is current.")
            return
        target.write_text(text)
        self.stdout.write(f"Wrote {target}.")
