"""Settings for the reference deployment, read from the environment (12-factor).

Every knob is an environment variable, so the same image runs in dev, CI and production;
`environments/<env>/.env.example` lists them all. Values are strings: booleans accept
true/yes/on/1 and false/no/off/0, lists are comma-separated.
"""
import importlib.util
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name, default=None):
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"environment variable {name} is not set")
        return default
    return value


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean")


def env_list(name, default=""):
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_int(name, default):
    value = env_str(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


DEBUG = env_bool("ENV_DEBUG", False)

SECRET_KEY = os.environ.get("ENV_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("ENV_SECRET_KEY must be set when ENV_DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production"

# With debug off there is no default: the load balancer's health check bypasses host
# validation (project.middleware), so a missing list would leave the environment Green while
# every real request gets a 400.
ALLOWED_HOSTS = env_list("ENV_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
if not ALLOWED_HOSTS and not DEBUG:
    raise ImproperlyConfigured(
        "ENV_ALLOWED_HOSTS must be set when ENV_DEBUG is off (comma-separated host names, "
        "e.g. www.example.com)"
    )
CSRF_TRUSTED_ORIGINS = env_list("ENV_CSRF_TRUSTED_ORIGINS", "")

# Test-only endpoints (/slow): never on in production.
ENABLE_TEST_VIEWS = env_bool("ENV_TEST_VIEWS", False)

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
]
# runserver_plus comes from django-extensions, installed by the dev requirements only.
if importlib.util.find_spec("django_extensions") is not None:
    INSTALLED_APPS.append("django_extensions")

MIDDLEWARE = [
    # First, so that load balancer checks bypass ALLOWED_HOSTS and the HTTPS redirect.
    "project.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]



# --- database ---------------------------------------------------------------------------
# In order: DATABASE_URL (postgres://USER:PASSWORD@HOST:PORT/NAME?sslmode=require, or
# sqlite:////absolute/path.sqlite3); else the RDS_* variables Elastic Beanstalk sets when an
# RDS PostgreSQL database is attached to the environment; else, in debug mode only, SQLite in
# app/db.sqlite3. Without debug and without a database the settings refuse to load.
_DB_ENGINES = {
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "pgsql": "django.db.backends.postgresql",
    "sqlite": "django.db.backends.sqlite3",
}


def database_from_url(url):
    """A DATABASES entry from a URL; user, password and query values may be %-encoded."""
    parts = urlsplit(url)
    engine = _DB_ENGINES.get(parts.scheme)
    if engine is None:
        raise ImproperlyConfigured(
            f"DATABASE_URL: unsupported scheme {parts.scheme!r} "
            f"(use one of {', '.join(sorted(_DB_ENGINES))})"
        )
    if engine.endswith("sqlite3"):
        # sqlite:////abs/path (what follows the third slash), sqlite://:memory:
        name = ":memory:" if parts.netloc == ":memory:" else unquote(parts.path[1:])
        if name != ":memory:" and not name.startswith("/"):
            raise ImproperlyConfigured("DATABASE_URL: a SQLite path must be absolute (sqlite:////path)")
        return {"ENGINE": engine, "NAME": name}
    name = unquote(parts.path.lstrip("/"))
    if not name or not parts.hostname:
        raise ImproperlyConfigured("DATABASE_URL: needs a host and a database name")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured("DATABASE_URL: the port is not a number") from None
    return {
        "ENGINE": engine,
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


def database_from_env():
    url = os.environ.get("DATABASE_URL", "")
    if url:
        database = database_from_url(url)
    elif os.environ.get("RDS_HOSTNAME"):
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": env_str("RDS_DB_NAME"),
            "USER": env_str("RDS_USERNAME"),
            "PASSWORD": env_str("RDS_PASSWORD"),
            "HOST": env_str("RDS_HOSTNAME"),
            "PORT": env_str("RDS_PORT", "5432"),
        }
    elif DEBUG:
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "db.sqlite3")}
    else:
        raise ImproperlyConfigured(
            "DATABASE_URL (or the RDS_* variables of an attached RDS database) must be set "
            "when ENV_DEBUG is off"
        )
    if not database["ENGINE"].endswith("sqlite3"):
        # Connections are kept by each gunicorn worker and checked before reuse.
        database["CONN_MAX_AGE"] = env_int("ENV_DB_CONN_MAX_AGE", 60)
        database["CONN_HEALTH_CHECKS"] = True
    return database


DATABASES = {"default": database_from_env()}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Static files: collected into app/dist, served by nginx under /static/ in prod and by the
# dev "cdn" process (python -m http.server) at its root; ENV_CDN points the URLs there.
STATIC_URL = env_str("ENV_CDN", "/static/")
STATIC_ROOT = BASE_DIR / "dist"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic writes each file also under a name with its content hash (app.3f2a...css)
# and a manifest; pages link the hashed names, which nginx may cache for a year. In debug
# mode the plain names are linked (no collectstatic needed).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# Behind nginx and an AWS load balancer that terminates TLS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False
SECURE_COOKIES = env_bool("ENV_SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SECURE_SSL_REDIRECT = env_bool("ENV_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("ENV_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("ENV_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("ENV_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
# HSTS for subdomains and the preload list depend on the whole domain, not on this app:
# `check --deploy` does not insist on them unless you clear this list.
SILENCED_SYSTEM_CHECKS = env_list("ENV_SILENCED_SYSTEM_CHECKS", "security.W005,security.W021")
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env_str("ENV_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
