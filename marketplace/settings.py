"""Junction settings, read from the environment.

Development needs no variables at all: SQLite and a filesystem Celery broker under
``var/``. Production sets ``JUNCTION_PROFILE=production`` plus the variables the README
lists; ``manage.py check --deploy`` is clean under that profile.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


PROFILE = env("JUNCTION_PROFILE", "development")
PRODUCTION = PROFILE == "production"
if PROFILE not in {"development", "production"}:
    raise ImproperlyConfigured(f"JUNCTION_PROFILE must be development or production, got {PROFILE!r}")

# Everything the embedded default writes (database, broker queue, uploads) lives here.
DATA_DIR = Path(env("JUNCTION_DATA_DIR", str(BASE_DIR / "var")))
# Where the demo's pretend devices answer (marketplace/demo/views.py): the web server that
# make run starts, on JUNCTION_PORT (Procfile.dev).
JUNCTION_DEMO_BASE_URL = env("JUNCTION_DEMO_BASE_URL", f"http://127.0.0.1:{env('JUNCTION_PORT', '8000')}").rstrip("/")
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", not PRODUCTION)

SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY is required when JUNCTION_PROFILE=production")
    SECRET_KEY = "dev-only-insecure-key-" + "x" * 40

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
if PRODUCTION and not ALLOWED_HOSTS:
    # Without it Django answers 400 to every request: say so at start-up, not at the first request.
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is required when JUNCTION_PROFILE=production: the host names this site "
        "answers to, comma-separated (e.g. ALLOWED_HOSTS=junction.example.com)"
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# The site's public address, for URLs made outside a request: the one-time callback URLs
# handlers mint in workers (runtime/callbacks.py). By default https:// and the first
# ALLOWED_HOSTS in production, this machine on JUNCTION_PORT in development.
JUNCTION_BASE_URL = (
    env("JUNCTION_BASE_URL")
    or (f"https://{ALLOWED_HOSTS[0].lstrip('.')}" if PRODUCTION else f"http://127.0.0.1:{env('JUNCTION_PORT', '8000')}")
).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "marketplace",
    "runtime",
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
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
WSGI_APPLICATION = "marketplace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "marketplace.accounts.context.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# SQLite by default. IMMEDIATE transactions plus a busy timeout let the web server, the
# worker and beat share one file without "database is locked" on write upgrades.
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{DATA_DIR / 'junction.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
    DATABASES["default"]["TEST"] = {"NAME": env("SQLITE_TEST_NAME") or None}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Accounts (django-allauth; docs/accounts.md) ---------------------------------------------
# Customers sign up, log in and reset their password at /accounts/ (allauth); the console
# keeps its own login at /admin/login/ for publishers and staff.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",  # the console's login
    "allauth.account.auth_backends.AuthenticationBackend",  # username or e-mail
]
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
# "optional": a confirmation mail is sent, nothing waits for it; "mandatory" holds the
# login until the address is confirmed; "none" sends nothing.
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", "optional")
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Junction] "
# The sign-up form asks for the organization too (marketplace/accounts/forms.py).
ACCOUNT_FORMS = {"login": "marketplace.accounts.forms.LoginForm", "signup": "marketplace.accounts.forms.SignupForm"}
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "marketplace:integration-list"
ACCOUNT_LOGOUT_REDIRECT_URL = "marketplace:integration-list"
ACCOUNT_SIGNUP_REDIRECT_URL = "marketplace:my-organization"
# An invitation link works once, for this many days (services/organizations.py).
JUNCTION_INVITATION_DAYS = env_int("JUNCTION_INVITATION_DAYS", 7)

# Password-reset and confirmation mails: printed on the console in development; production
# sends them through SMTP (EMAIL_HOST and friends).
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Junction <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files ------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise
WHITENOISE_USE_FINDERS = DEBUG
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(DATA_DIR / "media")))
# Attachments: outside MEDIA_ROOT, never served as files, only through the download view
# that checks access (marketplace/storages.py). A proxy must not serve this folder.
JUNCTION_PRIVATE_MEDIA_ROOT = Path(env("JUNCTION_PRIVATE_MEDIA_ROOT", str(DATA_DIR / "private")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "private": {"BACKEND": "marketplace.storages.PrivateFileStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024

# --- Security (production profile) -----------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# Secrets at rest (device credentials, secret config values) are Fernet-encrypted.
# JUNCTION_SECRETS_KEYS is a comma-separated list of Fernet keys, newest first, so keys can
# be rotated; development derives one from SECRET_KEY.
# Every key is checked here, so a bad one stops the process at start-up instead of failing
# the first save or run that touches a secret.
MAKE_SECRETS_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
JUNCTION_SECRETS_KEYS = env_list("JUNCTION_SECRETS_KEYS")
if not JUNCTION_SECRETS_KEYS:
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"JUNCTION_SECRETS_KEYS is required when JUNCTION_PROFILE=production; make a key with {MAKE_SECRETS_KEY}"
        )
    JUNCTION_SECRETS_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]
for number, key in enumerate(JUNCTION_SECRETS_KEYS, start=1):
    try:
        Fernet(key)
    except ValueError:
        # The key itself is never echoed: it is a secret, and logs are not.
        raise ImproperlyConfigured(
            f"JUNCTION_SECRETS_KEYS: key {number} of {len(JUNCTION_SECRETS_KEYS)} is not a Fernet key "
            f"(32 bytes, url-safe base64, 44 characters); make one with {MAKE_SECRETS_KEY}"
        ) from None
del number, key

# --- Domain limits -----------------------------------------------------------------------
JUNCTION_ICON_MIN_PX = 400
JUNCTION_ICON_MAX_PX = 4096
JUNCTION_ICON_MAX_BYTES = 2 * 1024 * 1024
JUNCTION_ICON_THUMBNAIL_PX = 128
JUNCTION_ATTACHMENT_MAX_BYTES = env_int("JUNCTION_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
# Housekeeping deletes icon and attachment files no row refers to once they are this old
# (left behind when a transaction rolled back after writing them).
JUNCTION_ORPHAN_FILE_HOURS = env_int("JUNCTION_ORPHAN_FILE_HOURS", 24)
JUNCTION_APISCHEMA_MAX_BYTES = env_int("JUNCTION_APISCHEMA_MAX_BYTES", 5 * 1024 * 1024)
JUNCTION_BUNDLE_MAX_FILES = env_int("JUNCTION_BUNDLE_MAX_FILES", 64)  # Lua files per bundle (drafts and validation)
JUNCTION_BUNDLE_MAX_FILE_BYTES = 256 * 1024
# Package zips (marketplace/packaging/packages.py): entries, total unpacked bytes, and the
# unpacked-to-packed ratio past which an archive is refused as a zip bomb.
JUNCTION_PACKAGE_MAX_FILES = env_int("JUNCTION_PACKAGE_MAX_FILES", 256)
JUNCTION_PACKAGE_MAX_BYTES = env_int("JUNCTION_PACKAGE_MAX_BYTES", 20 * 1024 * 1024)
JUNCTION_PACKAGE_MAX_RATIO = env_int("JUNCTION_PACKAGE_MAX_RATIO", 100)
# Package validation (marketplace/packaging, docs/validation.md): what a manifest may declare,
# and how long validation may spend on code, so no package can hold a web worker for long.
JUNCTION_MANIFEST_MAX_HANDLERS = env_int("JUNCTION_MANIFEST_MAX_HANDLERS", 100)
JUNCTION_MANIFEST_MAX_TIMERS = env_int("JUNCTION_MANIFEST_MAX_TIMERS", 20)  # also enforced by the runtime
JUNCTION_MANIFEST_MAX_BYTES = env_int("JUNCTION_MANIFEST_MAX_BYTES", 256 * 1024)  # manifest.json as JSON text
# Nesting of JSON from outside: manifests, webhook bodies, event payloads (marketplace/jsonvalues.py).
JUNCTION_JSON_MAX_DEPTH = env_int("JUNCTION_JSON_MAX_DEPTH", 64)
# Milliseconds Lua may spend compiling all the files of a bundle (its parser is quadratic on
# long `and`/`or` chains); a bundle over it is refused with lua_too_complex.
JUNCTION_LUA_COMPILE_MAX_MS = env_int("JUNCTION_LUA_COMPILE_MAX_MS", 1000)
# The static checker (luaparser, pure Python) reads at most this many bytes and milliseconds
# of a bundle; files past either are only compiled, with the lua_parser_fallback warning.
JUNCTION_LUA_STATIC_MAX_BYTES = env_int("JUNCTION_LUA_STATIC_MAX_BYTES", 256 * 1024)
JUNCTION_LUA_STATIC_MAX_MS = env_int("JUNCTION_LUA_STATIC_MAX_MS", 2000)
JUNCTION_RUN_LOG_MAX_BYTES = 64 * 1024

# --- Cache ------------------------------------------------------------------------------------
# What the API's throttles (and allauth's login rate limits) count in. The default is each
# process's memory, right for one web process (`make run`); with several (gunicorn's
# workers, more machines) point JUNCTION_CACHE_URL at Redis (redis://host:6379/2) so the
# counts are shared, or at a folder (file:///path) on one machine.
JUNCTION_CACHE_URL = env("JUNCTION_CACHE_URL", "") or ""
if JUNCTION_CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": JUNCTION_CACHE_URL}}
elif JUNCTION_CACHE_URL.startswith("file://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": JUNCTION_CACHE_URL.removeprefix("file://")}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- REST API -----------------------------------------------------------------------------
# /api/v1/ (marketplace/api/; the contract is ../shared/API.md). Session auth (with CSRF) for
# the browser, personal tokens (``Authorization: Bearer``) for everything else. Throttling
# is per user (token or session) and per anonymous IP, counted in the default cache.
JUNCTION_API_THROTTLE_USER = env("JUNCTION_API_THROTTLE_USER", "1200/min")
JUNCTION_API_THROTTLE_ANON = env("JUNCTION_API_THROTTLE_ANON", "120/min")
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "marketplace.api.schema.JunctionAutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "marketplace.api.pagination.Pagination",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"user": JUNCTION_API_THROTTLE_USER, "anon": JUNCTION_API_THROTTLE_ANON},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "marketplace.api.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "marketplace.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Junction API",
    "DESCRIPTION": (
        "Publish, install and run integrations. Authenticate with a personal API token "
        "(`Authorization: Bearer <token>`) or a browser session. Every error has the shape "
        '`{"error": {"code", "message", "fields"}}`; another organization\'s objects answer 404.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs pages' JavaScript and CSS come from drf-spectacular-sidecar: they work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Enums named for what they are, so that other fields called state, code or change
    # (an instance's state, say) do not collide with these.
    "ENUM_NAME_OVERRIDES": {
        "VersionStateEnum": "marketplace.choices.VersionState",
        "ReportCodeEnum": "marketplace.packaging.report.CODES",
        "DiffChangeEnum": "marketplace.packaging.diffs.CHANGES",
        "RunStatusEnum": "marketplace.choices.RunStatus",
        "TriggerEnum": "marketplace.choices.Trigger",
    },
}

# --- Celery ---------------------------------------------------------------------------------
# The embedded default is a filesystem broker: no server, and worker, beat and web share it
# through files under var/broker. It is kombu's filesystem transport made safe to share
# (marketplace/broker.py: atomic writes, unreadable files quarantined, the messages of a
# worker that died given back as redelivered; docs/embedded.md). Production points
# CELERY_BROKER_URL at Redis.
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "marketplace.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "unacked_folder": str(BROKER_DIR / "unacked"),  # a folder per consumer: taken, not yet acked
        "quarantine_folder": str(BROKER_DIR / "quarantine"),  # files that were not readable messages
        # Seconds between a worker's checks for consumers that died holding messages.
        "recover_interval": 10,
        # A worker takes one message per free process per poll: kombu's default of 1 s
        # would hold the embedded default to a couple of messages a second.
        "polling_interval": 0.05,
    }
else:
    # Far above the hard time limit of any task, so a slow run is never redelivered.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TIMEZONE = "UTC"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Runtime: running installed handlers (runtime/) --------------------------------------
# Handler runs go to their own queue so untrusted work never delays the dispatcher tick.
CELERY_TASK_ROUTES = {
    "runtime.tasks.run_handler_task": {"queue": "handlers"},
    "runtime.tasks.run_batch_task": {"queue": "handlers"},
}
# Runs sent together (a dispatcher tick, polled items, requeued runs) go one per message up
# to BATCH_SPREAD runs, so that many workers share a small burst; a larger burst goes in
# messages of up to BATCH_MAX runs, since a message costs the worker more than a short run.
JUNCTION_RUN_BATCH_MAX = env_int("JUNCTION_RUN_BATCH_MAX", 16)
JUNCTION_RUN_BATCH_SPREAD = env_int("JUNCTION_RUN_BATCH_SPREAD", 8)
# Events posted one at a time (the webhook) gather in each posting process: runs posted
# within WINDOW_MS after a send go in one message, sent when the window closes or once it
# holds WINDOW_RUNS runs; the first run after a quiet spell goes at once. 0 or 1: off, one
# message per run (runtime/ingress.py; figures in docs/running.md).
JUNCTION_INGRESS_WINDOW_MS = env_int("JUNCTION_INGRESS_WINDOW_MS", 20)
JUNCTION_INGRESS_WINDOW_RUNS = env_int("JUNCTION_INGRESS_WINDOW_RUNS", JUNCTION_RUN_BATCH_MAX)
# A batch starts runs for this long at most, then sends the rest on in new messages: short
# runs share a message, slow ones do not hold each other up while other workers are free.
JUNCTION_RUN_BATCH_SECONDS = env_int("JUNCTION_RUN_BATCH_SECONDS", 2)
# A pool process that dies mid-run (memory, crash) gives its message back; the run's pickup
# count (HandlerRun.starts) stops it from being redelivered forever. (On the hard time limit
# Celery acks the message instead; the worker records the run, see the limits below.)
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Time limits (s), against each other: the soft limit is above the longest run a batch may
# start (JUNCTION_RUNTIME_MAX_TIMEOUT_MS, 60 s, after JUNCTION_RUN_BATCH_SECONDS) plus 5 s to
# record it; the hard limit is close above it, because it is what stops a run stuck inside a
# C function (neither the sandbox's hook nor the soft limit reach it there): the pool child
# is killed and the worker records the run as `timeout` at once (runtime.tasks). Both stay
# far below the Redis visibility timeout (3600 s), which redelivers anything running longer.
JUNCTION_RUN_SOFT_TIME_LIMIT = env_int("JUNCTION_RUN_SOFT_TIME_LIMIT", 70)
JUNCTION_RUN_TIME_LIMIT = env_int("JUNCTION_RUN_TIME_LIMIT", 80)
CELERY_TASK_SOFT_TIME_LIMIT = JUNCTION_RUN_SOFT_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = JUNCTION_RUN_TIME_LIMIT
# A run still `running` this many seconds past the hard limit has no worker left (a worker
# killed with its pool, a web process that died mid-run): the dispatcher tick records it as
# `worker_lost`, looking every REAP_EVERY seconds (runtime.runs.fail_stale_runs).
JUNCTION_RUN_REAP_MARGIN_SECONDS = env_int("JUNCTION_RUN_REAP_MARGIN_SECONDS", 20)
JUNCTION_RUN_REAP_EVERY_SECONDS = env_int("JUNCTION_RUN_REAP_EVERY_SECONDS", 15)
# Runs executed for a web request or a command (runtime.worker.run_now, run_handler) run
# in a child process killed this many ms after the run's own timeout (runtime.isolation):
# the backstop for code stuck where the sandbox cannot interrupt it. An RLIMIT_CPU of the
# same length is the child's second line.
JUNCTION_RUNTIME_KILL_MARGIN_MS = env_int("JUNCTION_RUNTIME_KILL_MARGIN_MS", 2000)
# In a worker's prefork pool process a run stuck that long past its own timeout is recorded as
# `timeout` and the process killed by a watchdog thread (runtime.watchdog), long before the
# hard limit; Celery replaces the process and redelivers the message. Off: the hard limit only.
JUNCTION_RUN_WATCHDOG = env_bool("JUNCTION_RUN_WATCHDOG", True)
# Recycle worker processes: untrusted code cannot leak memory across many runs.
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 1000)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 512_000)  # KiB
JUNCTION_RUN_MAX_STARTS = env_int("JUNCTION_RUN_MAX_STARTS", 3)  # pickups before "worker_lost"
# Celery's Django fixup closes the database connection around every task unless this is
# set: reconnecting to PostgreSQL costs more than a whole handler run. The fixup still
# recycles a worker's connection every 2 × this many tasks; run_handler_task drops a
# broken one and retries.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
# Timers: one beat entry ticks the dispatcher; it claims due TimerSchedule rows in batches.
JUNCTION_DISPATCH_EVERY_SECONDS = env_int("JUNCTION_DISPATCH_EVERY_SECONDS", 1)
JUNCTION_DISPATCH_BATCH = env_int("JUNCTION_DISPATCH_BATCH", 1000)
JUNCTION_DISPATCH_MAX_SECONDS = env_int("JUNCTION_DISPATCH_MAX_SECONDS", 20)
JUNCTION_MIN_TIMER_SECONDS = env_int("JUNCTION_MIN_TIMER_SECONDS", 10)  # shared with package validation
JUNCTION_RETRY_MAX_ATTEMPTS = 10
JUNCTION_RETRY_MAX_DELAY_SECONDS = 3600
JUNCTION_POLL_SEEN_MAX = env_int("JUNCTION_POLL_SEEN_MAX", 1000)  # remembered item ids per polling timer
JUNCTION_WEBHOOK_MAX_BYTES = env_int("JUNCTION_WEBHOOK_MAX_BYTES", 256 * 1024)
# Posts to one instance's webhook: a token bucket refilled at RATE a second (0: no limit),
# holding at most BURST; past it, 429 with Retry-After (runtime/throttle.py, docs/operations.md).
JUNCTION_WEBHOOK_RATE = float(env("JUNCTION_WEBHOOK_RATE") or 50)
JUNCTION_WEBHOOK_BURST = env_int("JUNCTION_WEBHOOK_BURST", 200)
if JUNCTION_WEBHOOK_RATE < 0 or JUNCTION_WEBHOOK_BURST < 1:
    raise ImproperlyConfigured("JUNCTION_WEBHOOK_RATE must be 0 or more and JUNCTION_WEBHOOK_BURST at least 1")
# Housekeeping (pruning runs among its jobs) runs this often; at hundreds of runs a second
# run it every few minutes so each pass prunes a few minutes' worth (docs/operations.md).
JUNCTION_HOUSEKEEPING_EVERY_SECONDS = env_int("JUNCTION_HOUSEKEEPING_EVERY_SECONDS", 3600)
JUNCTION_RUN_RETENTION_DAYS = env_int("JUNCTION_RUN_RETENTION_DAYS", 30)
# Pruning old runs (runtime/retention.py; figures in docs/operations.md): runs deleted per
# transaction, the pause between transactions (ms) so workers and autovacuum keep their
# share of the disk, and the seconds one housekeeping spends at most (the next goes on).
JUNCTION_RUN_PRUNE_BATCH = env_int("JUNCTION_RUN_PRUNE_BATCH", 5000)
JUNCTION_RUN_PRUNE_PAUSE_MS = env_int("JUNCTION_RUN_PRUNE_PAUSE_MS", 100)
JUNCTION_RUN_PRUNE_MAX_SECONDS = env_int("JUNCTION_RUN_PRUNE_MAX_SECONDS", 60)
JUNCTION_REQUEUE_AFTER_SECONDS = 900  # a queued run never picked up by then lost its message
# An install, upgrade or uninstall whose lifecycle handlers began this long ago lost its
# process (each handler ends within JUNCTION_RUNTIME_MAX_TIMEOUT_MS plus the kill margin):
# housekeeping fails the install, rolls the upgrade back or finishes the uninstall.
JUNCTION_LIFECYCLE_STALL_SECONDS = env_int("JUNCTION_LIFECYCLE_STALL_SECONDS", 900)

# --- Runtime: the Lua sandbox and ctx (runtime/sandbox.py, limits.py, ctx.py) -----------------
# A handler's manifest `limits` (timeoutMs, memoryMb, instructions) are capped by the maxima;
# handlers without them get the defaults. The other caps apply to every run.
JUNCTION_RUNTIME_DEFAULT_TIMEOUT_MS = env_int("JUNCTION_RUNTIME_DEFAULT_TIMEOUT_MS", 10_000)
JUNCTION_RUNTIME_MAX_TIMEOUT_MS = env_int("JUNCTION_RUNTIME_MAX_TIMEOUT_MS", 60_000)
JUNCTION_RUNTIME_DEFAULT_MEMORY_MB = env_int("JUNCTION_RUNTIME_DEFAULT_MEMORY_MB", 32)
JUNCTION_RUNTIME_MAX_MEMORY_MB = env_int("JUNCTION_RUNTIME_MAX_MEMORY_MB", 128)
JUNCTION_RUNTIME_DEFAULT_INSTRUCTIONS = env_int("JUNCTION_RUNTIME_DEFAULT_INSTRUCTIONS", 100_000_000)
JUNCTION_RUNTIME_MAX_INSTRUCTIONS = env_int("JUNCTION_RUNTIME_MAX_INSTRUCTIONS", 1_000_000_000)
JUNCTION_RUNTIME_LOG_MAX_LINES = env_int("JUNCTION_RUNTIME_LOG_MAX_LINES", 500)  # bytes: JUNCTION_RUN_LOG_MAX_BYTES
JUNCTION_RUNTIME_RESULT_MAX_BYTES = env_int("JUNCTION_RUNTIME_RESULT_MAX_BYTES", 256 * 1024)
JUNCTION_RUNTIME_VALUE_MAX_BYTES = env_int("JUNCTION_RUNTIME_VALUE_MAX_BYTES", 256 * 1024)  # one cached/stored value
JUNCTION_RUNTIME_HTTP_MAX_RESPONSE_BYTES = env_int("JUNCTION_RUNTIME_HTTP_MAX_RESPONSE_BYTES", 2 * 1024 * 1024)
JUNCTION_RUNTIME_SQL_MAX_ROWS = env_int("JUNCTION_RUNTIME_SQL_MAX_ROWS", 1000)
# Worst-case backtracking steps allowed for one string.find/match/gmatch/gsub (up to ~2 s of C
# at the ~17 ns per step measured; a call whose worst case would pass the deadline is stopped).
JUNCTION_RUNTIME_PATTERN_MAX_COST = env_int("JUNCTION_RUNTIME_PATTERN_MAX_COST", 100_000_000)
# ctx.sql: one SQLite file per organization, <dir>/<organization id>.sqlite3.
JUNCTION_RUNTIME_TENANT_DIR = Path(env("JUNCTION_RUNTIME_TENANT_DIR", str(DATA_DIR / "tenants")))
# SQLite devices: an organization's files must lie in <dir>/<organization id>/ (checked when
# a device is saved and again at run time); run_handler --bind on a developer's machine is exempt.
JUNCTION_DEVICE_SQLITE_DIR = Path(env("JUNCTION_DEVICE_SQLITE_DIR", str(DATA_DIR / "devices")))
# Where HTTP and PostgreSQL devices may connect (marketplace/egress.py, docs/devices.md). The
# platform's own database, broker and caches are always refused. Networks (CIDR) always
# refused: this machine, link-local and cloud metadata, IETF-reserved, multicast, reserved.
JUNCTION_DEVICE_DENY_NETWORKS = env_list("JUNCTION_DEVICE_DENY_NETWORKS", ",".join((
    "0.0.0.0/8", "169.254.0.0/16", "192.0.0.0/24", "100.100.100.200/32", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "fe80::/10", "fd00:ec2::254/128", "ff00::/8",
)))
# Loopback, RFC 1918, CGNAT and ULA addresses: on in development (the demo's devices are the
# dev server on 127.0.0.1), off in production, where they are the platform's own network.
JUNCTION_DEVICE_ALLOW_PRIVATE = env_bool("JUNCTION_DEVICE_ALLOW_PRIVATE", not PRODUCTION)
# Private networks (CIDR) devices may reach even so: customers' devices on a private link.
JUNCTION_DEVICE_ALLOW_NETWORKS = env_list("JUNCTION_DEVICE_ALLOW_NETWORKS", "")
# More of the platform's own services (host:port, e.g. the app server behind the proxy),
# refused like its database and broker.
JUNCTION_DEVICE_DENY_SERVICES = env_list("JUNCTION_DEVICE_DENY_SERVICES", "")
# "Test connection" on the customers' pages (services.connections): how long one check of a
# device (an HTTP HEAD or a SQL SELECT 1) may take, in seconds, before it is reported failed.
JUNCTION_DEVICE_TEST_TIMEOUT_SECONDS = env_int("JUNCTION_DEVICE_TEST_TIMEOUT_SECONDS", 5)
# A mistyped network would otherwise surface only at the first device call.
for _name in ("JUNCTION_DEVICE_DENY_NETWORKS", "JUNCTION_DEVICE_ALLOW_NETWORKS"):
    for _network in globals()[_name]:
        try:
            ipaddress.ip_network(_network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{_name}: {_network!r} is not a network (write CIDRs such as 10.20.0.0/16)") from None
for _service in JUNCTION_DEVICE_DENY_SERVICES:
    if not _service.rpartition(":")[0] or not _service.rpartition(":")[2].isdigit():
        raise ImproperlyConfigured(f"JUNCTION_DEVICE_DENY_SERVICES: {_service!r} is not host:port")

# --- Runtime: quotas and caps (runtime/stores.py, runs.py, events.py; docs/quotas.md) --------
# Storage per instance: its data containers and instance cache together, in bytes of
# compact JSON (value, key and container name) and in entries. Over it: quota_exceeded.
JUNCTION_INSTANCE_STORAGE_MAX_BYTES = env_int("JUNCTION_INSTANCE_STORAGE_MAX_BYTES", 10 * 1024 * 1024)
JUNCTION_INSTANCE_STORAGE_MAX_ENTRIES = env_int("JUNCTION_INSTANCE_STORAGE_MAX_ENTRIES", 10_000)
# The tenant ctx.cache, shared by an organization's instances: the same measure, per organization.
JUNCTION_TENANT_CACHE_MAX_BYTES = env_int("JUNCTION_TENANT_CACHE_MAX_BYTES", 10 * 1024 * 1024)
JUNCTION_TENANT_CACHE_MAX_ENTRIES = env_int("JUNCTION_TENANT_CACHE_MAX_ENTRIES", 10_000)
# ctx.sql: the organization's file, its TEMP tables (kept in memory) and the memory SQLite
# may take in a process for sorts and other transient results (process-wide, 0: none).
JUNCTION_TENANT_SQL_MAX_BYTES = env_int("JUNCTION_TENANT_SQL_MAX_BYTES", 100 * 1024 * 1024)
JUNCTION_TENANT_SQL_TEMP_MAX_BYTES = env_int("JUNCTION_TENANT_SQL_TEMP_MAX_BYTES", 16 * 1024 * 1024)
JUNCTION_TENANT_SQL_HEAP_MAX_BYTES = env_int("JUNCTION_TENANT_SQL_HEAP_MAX_BYTES", 256 * 1024 * 1024)
# Runs waiting per instance: an event or a timer slot beyond it is refused (queue_full).
JUNCTION_INSTANCE_MAX_QUEUED_RUNS = env_int("JUNCTION_INSTANCE_MAX_QUEUED_RUNS", 1000)
# New items one polling run may post; the rest are not marked seen and come with the next poll.
JUNCTION_POLL_MAX_ITEMS = env_int("JUNCTION_POLL_MAX_ITEMS", 100)
# ctx.callback.url: one-time URLs one run may mint, and the longest life one may ask for
# (seconds; the default ttl is JUNCTION_CALLBACK_DEFAULT_TTL_SECONDS).
JUNCTION_CALLBACK_MAX_PER_RUN = env_int("JUNCTION_CALLBACK_MAX_PER_RUN", 100)
JUNCTION_CALLBACK_DEFAULT_TTL_SECONDS = env_int("JUNCTION_CALLBACK_DEFAULT_TTL_SECONDS", 900)
JUNCTION_CALLBACK_MAX_TTL_SECONDS = env_int("JUNCTION_CALLBACK_MAX_TTL_SECONDS", 7 * 86400)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}
