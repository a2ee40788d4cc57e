"""The web app for the bench's query pass: orderproj.wsgi's application, each request's
database queries counted per route (bench.querycount). Only with BENCH_COUNT_QUERIES=1."""

from bench import querycount
from orderproj.wsgi import application as project_application


def application(environ, start_response):
    querycount.begin(querycount.web_step(environ))
    try:
        return project_application(environ, start_response)
    finally:
        querycount.end()
