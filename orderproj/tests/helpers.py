from prometheus_client.parser import text_string_to_metric_families


def scrape(client, **headers) -> dict[tuple, float]:
    """GET /metrics and parse it: (sample name, ((label, value), ...)) -> value."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
