"""Settings, read from the environment (django-environ); `.env` in the repo root is optional.

With no DATABASE_URL and no CELERY_BROKER_URL the project runs embedded: SQLite in WAL mode
with IMMEDIATE transactions, and Celery's filesystem transport as a broker that needs no
server. With the URLs set it is the production stack: PostgreSQL (psycopg 3) and Redis.
"""

import contextlib
import os
import secrets
from pathlib import Path

import environ
from kombu import Queue

from orderproj.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

# Local state of the embedded mode (SQLite file, broker folders, simulator storage).
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

EMBEDDED = not env.str("DATABASE_URL", default="") and not env.str("CELERY_BROKER_URL", default="")

# --- Security -----------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)


def _embedded_secret_key() -> str:
    """The embedded demo's own secret, made at random on its first start and kept in VAR_DIR
    (readable by its owner only), so no two checkouts share one. Processes starting together
    agree: the first to link its file into place wins."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        draft = VAR_DIR / f".secret_key.{secrets.token_hex(8)}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: the first to create it wins
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(draft.read_text())
        finally:
            draft.unlink(missing_ok=True)
    return path.read_text().strip()


# Only the embedded demo may run without a secret; any other deployment must provide one.
SECRET_KEY = env.str("SECRET_KEY", default="") or (_embedded_secret_key() if EMBEDDED else "")
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY must be set when DATABASE_URL or CELERY_BROKER_URL is.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Served over TLS (terminated by a proxy that sets X-Forwarded-Proto): cookies only over
# HTTPS, HSTS, and plain HTTP redirected, each still overridable on its own. The health
# check stays reachable over plain HTTP for load balancers.
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=BEHIND_TLS_PROXY)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=BEHIND_TLS_PROXY)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=BEHIND_TLS_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^api/health/$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if BEHIND_TLS_PROXY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_HTTPONLY = True

# --- Applications -------------------------------------------------------------------------
INSTALLED_APPS = [
    "orderproj.admin.OperationsAdminConfig",  # django.contrib.admin, our site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, no CDN
    "django_celery_beat",
    "core",
    "webhooks",
    "catalog",
    "inventory",
    "payments",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "orderproj.urls"
WSGI_APPLICATION = "orderproj.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.str("SQLITE_PATH", default=str(VAR_DIR / "db.sqlite3")),
            "OPTIONS": {
                # Writers take the lock at BEGIN, so concurrent writers queue on busy_timeout
                # instead of failing with "database is locked" when upgrading a read lock.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times with seconds wherever the admin shows them (orderproj/formats/en/formats.py).
FORMAT_MODULE_PATH = ["orderproj.formats"]
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- REST framework -----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.api.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.DefaultPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "core.api.filters.StrictOrderingFilter",
    ],
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
}
# How long a web process remembers which user an API token belongs to (a deleted token or a
# deactivated user is refused within this long); 0: looked up on every request.
TOKEN_CACHE_SECONDS = env.float("TOKEN_CACHE_SECONDS", default=10.0)
# Per user, on order creation only, e.g. "20/min"; empty turns it off. Read at request time.
ORDER_CREATE_THROTTLE_RATE = env.str("ORDER_CREATE_THROTTLE_RATE", default="")
# Idempotency-Key on order creation: a key is kept this long, then purged by celery-beat; a
# claim still in flight after IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS is abandoned and retaken.
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS = env.int("IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS", default=300)
SPECTACULAR_SETTINGS = {
    "TITLE": "Order processing API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Tags and operation ids from the path after /api/ (the spec's /orders/create too).
    "SCHEMA_PATH_PREFIX": r"/(api/)?",
    # Request and response bodies as separate components: read-only fields are not inputs.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.models.OrderStatus",
        "FailureReasonEnum": "orders.models.FailureReason",
    },
    # Swagger UI and ReDoc from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.describe_api",
    ],
}

# --- Cache (throttle counters, the wake-up debounce) -----------------------------------------
# Shared by every process: CACHE_URL, else the Redis of the broker, else files in VAR_DIR.
# The keys carry a prefix because with the default they live in the broker's Redis database
# (so never call cache.clear() there: it would empty the broker's queues too).
if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache("CACHE_URL")}
elif env.str("CELERY_BROKER_URL", default="").startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env.str("CELERY_BROKER_URL"),
            # A hung Redis must not hold a request (the wake-up debounce asks the cache):
            # each command gives up within the publish bound (core/publisher.py).
            "OPTIONS": {
                "socket_timeout": env.float("CELERY_PUBLISH_TIMEOUT", default=1.0),
                "socket_connect_timeout": env.float("CELERY_PUBLISH_TIMEOUT", default=1.0),
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
CACHES["default"].setdefault("KEY_PREFIX", "orderproj-cache")

# --- Celery -------------------------------------------------------------------------------
# (A host, which the filesystem transport ignores, spares a warning from every connection.)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "filesystem://localhost//"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for sub in ("out", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The transport polls its folders; the default (1 s) delays every task, and the
        # health check's worker ping, by up to a second per hop.
        "polling_interval": env.float("CELERY_FILESYSTEM_POLLING_INTERVAL", default=0.1),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # An unacknowledged task (acks_late) is redelivered after this long. It must exceed
        # every countdown/eta we schedule and every task time limit, or Redis redelivers a
        # task that is merely waiting or still running.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
        # A hung broker must not hang a request or a worker forever.
        "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=5.0),
        "socket_connect_timeout": env.float("CELERY_BROKER_CONNECT_TIMEOUT", default=3.0),
        "retry_on_timeout": False,
        "health_check_interval": 25,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECT_TIMEOUT", default=3.0)
# Publishing from web requests and after commits (core/publisher.py): once, each broker
# command giving up after this long, and not again for a few seconds after one did, so a
# down or hung broker delays an answer by this much at most; the order is already saved.
CELERY_PUBLISH_TIMEOUT = env.float("CELERY_PUBLISH_TIMEOUT", default=1.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
# A queue per kind of work, so a long warehouse sync never delays orders and each kind can
# have workers of its own (`celery worker -Q sync,maintenance`; docs/operating.md, "Dedicated
# workers"). A worker started without -Q consumes them all, as `make run`'s does.
CELERY_TASK_QUEUES = [
    Queue("orders"),  # an order's processing: reserve, charge, confirm, first push
    Queue("fulfilment"),  # pushes to the warehouse the first one did not get answered
    Queue("sync"),  # the warehouse stock sync
    Queue("maintenance"),  # the reconciler, the purge of old Idempotency-Keys
    Queue("webhooks"),  # order events to other systems: a slow receiver never slows orders
]
CELERY_TASK_DEFAULT_QUEUE = "orders"
CELERY_TASK_ROUTES = {
    "orders.process_ready": {"queue": "orders"},
    "orders.process_order": {"queue": "orders"},
    "orders.fulfil_order": {"queue": "fulfilment"},
    "inventory.sync_warehouse": {"queue": "sync"},
    "orders.reconcile": {"queue": "maintenance"},
    "orders.purge_idempotency_keys": {"queue": "maintenance"},
    "webhooks.deliver": {"queue": "webhooks"},
    "webhooks.purge": {"queue": "maintenance"},
}
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_PREFETCH_MULTIPLIER", default=1)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=120)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=100)
# Publishing from a web request: a few quick tries, never an unbounded wait.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Task events (three broker messages per task) only when something watches them: Flower turns
# them on at run time (`enable_events`), or set this for another monitor.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=False)
# Workers keep database connections across tasks, as web keeps them across requests: Django's
# CONN_MAX_AGE and CONN_HEALTH_CHECKS decide (close_old_connections around every task, in
# orderproj/celery_signals.py). Without this, Celery's Django fixup closes them after every
# task, and each task pays for a new PostgreSQL session.
CELERY_DB_REUSE_MAX = 2**62
# django-celery-beat's DatabaseScheduler, recording a heartbeat every tick for /api/health/.
CELERY_BEAT_SCHEDULER = "orderproj.beat:HeartbeatDatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- External services --------------------------------------------------------------------
# The simulated payment service and warehouse are served under /sim/ by this deployment's own
# web server (orderproj/wsgi.py) only when asked: SERVE_SIMULATORS, which the embedded mode
# turns on by default (and `make run` always, unless told otherwise), and the clients then
# default to them. Any other deployment must name its payment service and warehouse, and
# refuses to start without them: none ever "charges" a simulator by forgetting a URL.
SERVE_SIMULATORS = env.bool("SERVE_SIMULATORS", default=EMBEDDED)
_simulators = f"http://127.0.0.1:{env.int('PORT', default=8000)}/sim"
PAYMENT_API_URL = env.str("PAYMENT_API_URL", default="") or (
    f"{_simulators}/payments" if SERVE_SIMULATORS else ""
)
WAREHOUSE_API_URL = env.str("WAREHOUSE_API_URL", default="") or (
    f"{_simulators}/warehouse" if SERVE_SIMULATORS else ""
)
if not PAYMENT_API_URL or not WAREHOUSE_API_URL:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "PAYMENT_API_URL and WAREHOUSE_API_URL must be set (or SERVE_SIMULATORS=true, to use "
        "the simulated services this deployment then serves under /sim/)."
    )
WAREHOUSE_CONNECT_TIMEOUT = env.float("WAREHOUSE_CONNECT_TIMEOUT", default=2.0)
WAREHOUSE_READ_TIMEOUT = env.float("WAREHOUSE_READ_TIMEOUT", default=10.0)
PAYMENT_CONNECT_TIMEOUT = env.float("PAYMENT_CONNECT_TIMEOUT", default=2.0)
PAYMENT_READ_TIMEOUT = env.float("PAYMENT_READ_TIMEOUT", default=5.0)
# A batch's charge requests in flight at once (each on its own kept-alive connection).
PAYMENT_BATCH_CONCURRENCY = env.int("PAYMENT_BATCH_CONCURRENCY", default=16)

# --- Order workflow -----------------------------------------------------------------------
ORDER_CURRENCY = env.str("ORDER_CURRENCY", default="USD")
ORDER_MAX_LINES = env.int("ORDER_MAX_LINES", default=100)
ORDER_MAX_QUANTITY = env.int("ORDER_MAX_QUANTITY", default=10_000)
# Waiting for stock: retries with exponential backoff and jitter, then failed/out_of_stock.
ORDER_STOCK_RETRY_MAX = env.int("ORDER_STOCK_RETRY_MAX", default=5)
ORDER_STOCK_RETRY_BASE_SECONDS = env.float("ORDER_STOCK_RETRY_BASE_SECONDS", default=2.0)
ORDER_STOCK_RETRY_MAX_DELAY = env.float("ORDER_STOCK_RETRY_MAX_DELAY", default=120.0)
# Payment provider without a definitive answer (timeout, 5xx, 408/409/425/429): at most this
# many tries (each a charge request or a lookup, answered or not) with backoff; then the
# reconciler asks the provider, until the reservation expires.
ORDER_PAYMENT_RETRY_MAX = env.int("ORDER_PAYMENT_RETRY_MAX", default=5)
ORDER_PAYMENT_RETRY_BASE_SECONDS = env.float("ORDER_PAYMENT_RETRY_BASE_SECONDS", default=1.0)
ORDER_PAYMENT_RETRY_MAX_DELAY = env.float("ORDER_PAYMENT_RETRY_MAX_DELAY", default=60.0)
# Each delay is multiplied by a random factor in [1, 1 + jitter): retries spread out, and a
# jitter below 1 keeps every delay longer than the one before.
ORDER_RETRY_JITTER = env.float("ORDER_RETRY_JITTER", default=0.25)
# Workers take up ready orders in batches (orders/scheduling.py): at most this many at a time,
# each claimed for ORDER_CLAIM_SECONDS and renewed every third of it while the batch runs; a
# worker that dies lets them go when its claim runs out, and the next wake-up (beat sends
# one every ORDER_WAKE_INTERVAL_SECONDS) takes them up. A worker goes on with the next batch
# until none is ready or ORDER_BATCH_TIME_BUDGET_SECONDS have passed, then hands over.
ORDER_BATCH_SIZE = env.int("ORDER_BATCH_SIZE", default=100)
ORDER_CLAIM_SECONDS = env.int("ORDER_CLAIM_SECONDS", default=30)
ORDER_BATCH_TIME_BUDGET_SECONDS = env.int("ORDER_BATCH_TIME_BUDGET_SECONDS", default=30)
ORDER_WAKE_INTERVAL_SECONDS = env.int("ORDER_WAKE_INTERVAL_SECONDS", default=10)
# A burst of new orders wakes one worker, not one each, while a wake-up is on its way.
ORDER_WAKE_DEBOUNCE_SECONDS = env.int("ORDER_WAKE_DEBOUNCE_SECONDS", default=2)

# --- Warehouse sync and fulfilment ---------------------------------------------------------
# The beat schedule is created with this interval on a fresh install; after that it is edited
# in the admin (Periodic tasks), which wins over this setting.
WAREHOUSE_SYNC_INTERVAL_SECONDS = env.int("WAREHOUSE_SYNC_INTERVAL_SECONDS", default=60)
WAREHOUSE_SYNC_PAGE_SIZE = env.int("WAREHOUSE_SYNC_PAGE_SIZE", default=5000)
# A page the warehouse fails to serve is retried this many times, with backoff, before the
# run is recorded failed.
WAREHOUSE_SYNC_PAGE_RETRIES = env.int("WAREHOUSE_SYNC_PAGE_RETRIES", default=3)
WAREHOUSE_SYNC_RETRY_BASE_SECONDS = env.float("WAREHOUSE_SYNC_RETRY_BASE_SECONDS", default=0.5)
# Single flight: a run holds a lease, renewed every page; a dead run's lease expires.
WAREHOUSE_SYNC_LEASE_SECONDS = env.int("WAREHOUSE_SYNC_LEASE_SECONDS", default=300)
# A run stops by itself after this long (checked after each page) and the next run resumes
# where it stopped, so a catalog too large for one run is still covered, run after run. The
# sync task's own time limits are this plus a margin, not the global task limits.
WAREHOUSE_SYNC_MAX_SECONDS = env.int("WAREHOUSE_SYNC_MAX_SECONDS", default=240)
ORDER_SHIP_RETRY_MAX = env.int("ORDER_SHIP_RETRY_MAX", default=8)
ORDER_SHIP_RETRY_BASE_SECONDS = env.float("ORDER_SHIP_RETRY_BASE_SECONDS", default=2.0)
ORDER_SHIP_RETRY_MAX_DELAY = env.float("ORDER_SHIP_RETRY_MAX_DELAY", default=120.0)
# A step that fails with an unexpected error for one order (a bug, an answer nobody can read)
# is logged on it and retried with backoff, the rest of its batch going on; after this many
# it waits for the reconciler (every ORDER_STUCK_AFTER_SECONDS) and an operator.
ORDER_ERROR_RETRY_MAX = env.int("ORDER_ERROR_RETRY_MAX", default=5)
ORDER_ERROR_RETRY_BASE_SECONDS = env.float("ORDER_ERROR_RETRY_BASE_SECONDS", default=2.0)
ORDER_ERROR_RETRY_MAX_DELAY = env.float("ORDER_ERROR_RETRY_MAX_DELAY", default=120.0)

# --- Reconciler (celery-beat) ---------------------------------------------------------------
RECONCILE_INTERVAL_SECONDS = env.int("RECONCILE_INTERVAL_SECONDS", default=30)
# An order in a non-final state without progress for this long (no transition, no retry
# scheduled) is treated as stuck (a lost publish, a dead worker, a payment service that kept
# not answering) and its work re-published; the reconciler looks at an order at most once
# per this long. It must exceed the longest retry delay above (120 s x (1 + jitter)), or
# orders merely waiting would be re-published.
ORDER_STUCK_AFTER_SECONDS = env.int("ORDER_STUCK_AFTER_SECONDS", default=300)
# A reservation held longer than this is released (failed/reservation_expired), also while
# the payment service does not answer; a capture found afterwards is refunded.
ORDER_RESERVATION_TTL_SECONDS = env.int("ORDER_RESERVATION_TTL_SECONDS", default=900)
# A payment the provider said it had not charged is looked up again for this long after its
# last charge request (which may still land and capture; a capture is then refunded). A
# payment in doubt is looked up until the provider answers, however long that takes.
ORDER_LATE_CAPTURE_WINDOW_SECONDS = env.int("ORDER_LATE_CAPTURE_WINDOW_SECONDS", default=3600)
# Orders and payments one pass looks at, least recently looked at first.
RECONCILE_BATCH_SIZE = env.int("RECONCILE_BATCH_SIZE", default=500)
# A pass stops by itself after this long, short of the task's soft time limit; the next
# pass takes up what it did not reach.
RECONCILE_TIME_BUDGET_SECONDS = env.int("RECONCILE_TIME_BUDGET_SECONDS", default=80)

# --- Webhooks (docs/webhooks.md) -----------------------------------------------------------
# A failed delivery is tried again after the base delay, doubling with jitter, up to the
# maximum attempts (8 over about 4 hours); a subscription failing that long without one
# delivery getting through for WEBHOOK_DISABLE_AFTER_SECONDS is disabled.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=120.0)
WEBHOOK_DISABLE_AFTER_SECONDS = env.int("WEBHOOK_DISABLE_AFTER_SECONDS", default=86400)
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=2.0)
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT", default=5.0)
# Deliveries claimed and sent per round, and how many requests are in flight at once.
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=100)
WEBHOOK_CONCURRENCY = env.int("WEBHOOK_CONCURRENCY", default=8)
# Of those, how many may go to one subscription at once: a slow receiver has its share only.
WEBHOOK_SUBSCRIPTION_CONCURRENCY = env.int("WEBHOOK_SUBSCRIPTION_CONCURRENCY", default=4)
# A worker's claim on the deliveries it sends: one that dies leaves them for this long.
WEBHOOK_CLAIM_SECONDS = env.int("WEBHOOK_CLAIM_SECONDS", default=60)
WEBHOOK_TIME_BUDGET_SECONDS = env.float("WEBHOOK_TIME_BUDGET_SECONDS", default=20.0)
WEBHOOK_WAKE_DEBOUNCE_SECONDS = env.float("WEBHOOK_WAKE_DEBOUNCE_SECONDS", default=0.5)
# Beat's sweep: delivers what no wake-up brought (a worker that died, a lost publish).
WEBHOOK_SWEEP_SECONDS = env.int("WEBHOOK_SWEEP_SECONDS", default=15)
# How long a process trusts its list of the event types subscriptions want.
WEBHOOK_TYPES_CACHE_SECONDS = env.float("WEBHOOK_TYPES_CACHE_SECONDS", default=5.0)
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=7)

# --- Periodic tasks (celery-beat) -------------------------------------------------------------
# Every periodic task of the deployment, in one place. Each is created in django-celery-beat's
# schedule on migrate if it is not there yet (core/schedules.py); after that an operator edits
# it in the admin (Periodic tasks), and the edit wins over these values.
PERIODIC_TASKS = {
    "warehouse-sync": {
        "task": "inventory.sync_warehouse",
        "every_seconds": WAREHOUSE_SYNC_INTERVAL_SECONDS,
        "kwargs": {"trigger": "beat"},
        "description": "Pull the warehouse's stock snapshot (on_hand/version, compare-and-set).",
    },
    "reconcile-orders": {
        "task": "orders.reconcile",
        "every_seconds": RECONCILE_INTERVAL_SECONDS,
        "description": "Re-publish stuck orders, settle payments in doubt, expire reservations, "
        "refund late captures.",
    },
    "wake-order-workers": {
        "task": "orders.process_ready",
        "every_seconds": ORDER_WAKE_INTERVAL_SECONDS,
        "description": "Take up ready orders nobody took up: those of a worker that died, "
        "retries due.",
    },
    "purge-idempotency-keys": {
        "task": "orders.purge_idempotency_keys",
        "every_seconds": 3600,
        "description": "Delete Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_HOURS.",
    },
    "deliver-webhooks": {
        "task": "webhooks.deliver",
        "every_seconds": WEBHOOK_SWEEP_SECONDS,
        "description": "Deliver webhook events nobody took up: those of a worker that died, "
        "retries due.",
    },
    "purge-webhook-events": {
        "task": "webhooks.purge",
        "every_seconds": 3600,
        "description": "Delete webhook events older than WEBHOOK_RETENTION_DAYS with nothing "
        "left to send.",
    },
}

# --- Logging ------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# json: one JSON object per line (web, workers and beat alike; lines about an order carry
# `order_id`); plain: readable lines, what `make run` uses. See orderproj/logs.py.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)

# --- Operations: health, metrics, admin dashboard -----------------------------------------
# /api/health/ waits this long for a worker to answer a ping, and wants beat's last tick
# (beat ticks at least every 5 s) to be younger than BEAT_HEARTBEAT_MAX_AGE_SECONDS.
HEALTH_WORKER_PING_TIMEOUT = env.float("HEALTH_WORKER_PING_TIMEOUT", default=1.0)
BEAT_HEARTBEAT_MAX_AGE_SECONDS = env.int("BEAT_HEARTBEAT_MAX_AGE_SECONDS", default=60)
# /metrics answers only requests with `Authorization: Bearer <token>` when this is set.
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
# Products with `available` at or below this are listed on the admin's index page.
LOW_STOCK_THRESHOLD = env.int("LOW_STOCK_THRESHOLD", default=5)
