"""gunicorn reads ./gunicorn.conf.py by default (web in Procfile and docker-compose.yml, the
simulators). With LOG_FORMAT=json (the default) gunicorn's own lines (startup, worker
errors, the access log) go through the project's JSON handler like the application's; with
LOG_FORMAT=plain gunicorn keeps its usual format."""

import os

from orderproj.logs import gunicorn_logging_config

if os.environ.get("LOG_FORMAT", "json") == "json":
    logconfig_dict = gunicorn_logging_config(fmt="json", level=os.environ.get("LOG_LEVEL", "INFO"))

# gunicorn's control socket (`gunicornc`) defaults to one path per user, ~/.gunicorn/gunicorn.ctl,
# which a second server on the same machine (another `make run`, the simulators, a test)
# silently takes over and the first to stop removes. Nothing here uses it.
control_socket_disable = True
