"""WSGI entry point. Unless SERVE_SIMULATORS is off, the simulated payment service and
warehouse are served under /sim/ by the same server, so a bare `make run` needs no setting.
They are separate WSGI apps with their own storage, reached by the project only over HTTP."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderproj.settings")
django_application = get_wsgi_application()


def _with_simulators(app):
    from django.conf import settings

    if not settings.SERVE_SIMULATORS:
        return app
    from simulators.wsgi import build_application

    simulators = build_application()  # storage from VAR_DIR / PAYMENT_SIM_DB / WAREHOUSE_SIM_DB

    def dispatch(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/sim/"):
            return simulators(environ, start_response)
        return app(environ, start_response)

    return dispatch


application = _with_simulators(django_application)
