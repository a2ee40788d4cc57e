"""Property-based fuzzing of every operation of the OpenAPI schema (schemathesis on hypothesis),
on both database backends, in process through the WSGI application, as a customer and as
staff, with valid and invalid (negative) inputs: no answer may be a 5xx, and every answer must
conform to the schema (status documented, content type, body, headers).

Deterministic: hypothesis is derandomized (its seed comes from the test), ids restart at 1
(reset_sequences) and the payment simulator's randomness is seeded. Some generated path ids
are replaced by ids that exist, so the operations on real products, categories and orders run,
not only their 404s; order bodies sometimes name the seeded products, so creates succeed.
"""

import time
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from catalog.tests.factories import CategoryFactory
from core.api.postman import openapi_schema
from inventory.tests.factories import product_with_stock
from orderproj.celery import app as celery_app
from orders.interventions import order_cancel
from orders.tests.helpers import place_order, reserve, run_to_completion

# Examples per operation, per role and kind of input: some 2,000 requests in under a minute.
# (Invalid input must not break anything, and any refusal must be a documented one; that each
# bad query value is refused is asserted in test_list_params.)
POSITIVE_EXAMPLES = 40
NEGATIVE_EXAMPLES = 20
MINIMUM_REQUESTS = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# The health check answers 503, as documented, while a dependency is down; here no worker or
# beat runs. It is fuzzed for conformance like the rest, and is the one 5xx allowed.
HEALTH = "/api/health/"
SEEDED = {"id": [1, 2, 3, 4, 5], "product_id": [1, 2, 3, 4, 5]}


@pytest.fixture
def seeded(payment_sim, settings, django_user_model) -> Iterator[dict[str, str]]:
    """Products 1-5 with stock, categories, and orders 1-4 of the customer: pending,
    confirmed, cancelled, and reserved. Yields the role -> token header."""
    # Start from empty tables (ids from 1) whatever earlier tests, or processes they started,
    # left behind, so the same requests get the same answers in any run of the suite.
    call_command("flush", interactive=False, verbosity=0)
    customer = django_user_model.objects.create_user("alice", password="pw-alice")
    staff_user = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    settings.ORDER_CREATE_THROTTLE_RATE = ""
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2  # no worker runs here: do not wait for one
    # Named explicitly: factory sequences run on across tests, and names meet generated ones.
    products = [product_with_stock(1000, sku=f"FUZZ-{n}", name=f"Fuzzed {n}") for n in range(5)]
    for n in range(3):
        CategoryFactory(name=f"Fuzzed category {n}")
    place_order(customer, (products[0].id, 1))
    confirmed = place_order(customer, (products[1].id, 2))
    run_to_completion(confirmed.id)
    cancelled = place_order(customer, (products[2].id, 1))
    order_cancel(order=cancelled, actor=cancelled.customer, via="api")
    reserved = place_order(customer, (products[3].id, 1), (products[4].id, 2))
    reserve(reserved)
    yield {
        role: f"Token {Token.objects.get_or_create(user=user)[0].key}"
        for role, user in (("customer", customer), ("staff", staff_user))
    }
    celery_app.control.purge()  # the creates published work no worker will take


def modes_for(operation) -> list[tuple[GenerationMode, int]]:
    """Invalid input only where there is input to make invalid."""
    modes = [(GenerationMode.POSITIVE, POSITIVE_EXAMPLES)]
    inputs = (operation.path_parameters, operation.query, operation.headers, operation.body)
    if any(len(part) for part in inputs):
        modes.append((GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES))
    return modes


def checks_for(operation) -> list:
    if operation.path == HEALTH:
        return [check for check in CHECKS if check is not not_a_server_error]
    return CHECKS


def strategy_for(operation, mode: GenerationMode):
    """Generated cases, and as many again with seeded ids in the path and, for order
    creation, a body naming seeded products."""
    generated = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters]
    if not names:
        if (
            operation.path.endswith(("/api/orders/", "/orders/create"))
            and operation.method == "post"
        ):
            body = st.fixed_dictionaries(
                {
                    "items": st.lists(
                        st.fixed_dictionaries(
                            {
                                "product_id": st.sampled_from(SEEDED["product_id"]),
                                "quantity": st.integers(1, 3),
                            }
                        ),
                        min_size=1,
                        max_size=3,
                        unique_by=lambda item: item["product_id"],
                    )
                }
            )
            return st.one_of(generated, body.flatmap(lambda b: operation.as_strategy(body=b)))
        return generated
    seeded_ids = st.fixed_dictionaries({name: st.sampled_from(SEEDED[name]) for name in names})
    return st.one_of(
        generated,
        seeded_ids.flatmap(
            lambda ids: operation.as_strategy(generation_mode=mode, path_parameters=ids)
        ),
    )


def fuzzer(operation, mode, examples: int, application, token: str, sent: list):
    """A hypothesis test of one operation: each case sent with the token, its answer
    validated by the checks, its status recorded in `sent`."""
    headers = {"Authorization": token}

    @hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=strategy_for(operation, mode))
    def fuzz(case):
        response = case.call(app=application, headers=headers)
        sent.append((operation.path, response.status_code))
        case.validate_response(response, checks=checks_for(operation), headers=headers)

    return fuzz


@pytest.mark.embedded  # also on SQLite, where other values overflow or compare differently
@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_fuzzing_every_operation_finds_no_server_error_and_no_schema_violation(seeded, capsys):
    # given: the schema the API serves, and the application in process
    schema = schemathesis.openapi.from_dict(openapi_schema())
    application = get_wsgi_application()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
    sent: list[tuple[str, int]] = []
    failures: list[str] = []
    started = time.monotonic()

    # when: every operation is fuzzed as each role, with valid and with invalid input
    for operation in operations:
        for role, token in seeded.items():
            for mode, examples in modes_for(operation):
                fuzz = fuzzer(operation, mode, examples, application, token, sent)
                try:
                    fuzz()
                except (Exception, BaseExceptionGroup) as exc:  # reported together, below
                    failures.append(f"{operation.label} as {role} ({mode.value}):\n{exc}")

    # then
    elapsed = time.monotonic() - started
    codes = [status for _, status in sent]
    statuses = {s: codes.count(s) for s in sorted(set(codes))}
    summary = f"fuzzing: {len(sent)} requests in {elapsed:.1f}s, answers {statuses}"
    with capsys.disabled():
        print(f"\n{summary}")
    assert not failures, "\n\n".join(failures)
    assert len(sent) >= MINIMUM_REQUESTS
    assert not [(path, s) for path, s in sent if s >= 500 and path != HEALTH]
    assert statuses.get(202, 0) > 0 and statuses.get(200, 0) > 0  # the real paths ran too
