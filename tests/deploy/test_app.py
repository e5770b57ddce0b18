"""The app's QA step, as the prod image's test stage runs it (here in the test venv), and
settings that refuse to start half-configured."""
import secrets
import sys

import pytest

from conftest import ROOT, free_port, run

PROD_LIKE = {
    "PATH": "/usr/bin:/bin",
    "ENV_DEBUG": "false",
    "ENV_SSL_REDIRECT": "true",
    "ENV_HSTS_SECONDS": "3600",
    "ENV_SECURE_COOKIES": "true",
    "ENV_ALLOWED_HOSTS": "example.com",
    "ENV_SECRET_KEY": "build-only-" + secrets.token_urlsafe(50),
    "DATABASE_URL": "sqlite://:memory:",
}


def manage(*args, **env):
    return run([sys.executable, "app/manage.py", *args], cwd=ROOT, env=env, timeout=60)


def test_check_deploy_passes_with_prod_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PROD_LIKE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing,empty", [
    ("ENV_SECRET_KEY", False), ("ENV_ALLOWED_HOSTS", False), ("ENV_ALLOWED_HOSTS", True),
    ("DATABASE_URL", False),
])
def test_prod_settings_refuse_to_start_without(missing, empty):
    """Without debug, a missing secret key, host list or database stops the app at once (a
    missing host list would otherwise pass the load balancer's health check, which skips host
    validation, and answer every real request with 400)."""
    env = dict(PROD_LIKE)
    if empty:
        env[missing] = ""  # what compose passes for `KEY=`
    else:
        del env[missing]
    result = manage("check", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr, result.stderr


def test_rds_variables_configure_postgresql():
    env = dict(PROD_LIKE, RDS_HOSTNAME="db.internal", RDS_PORT="5432", RDS_DB_NAME="ebdb",
               RDS_USERNAME="app", RDS_PASSWORD="p@ss w0rd")
    del env["DATABASE_URL"]
    result = run([sys.executable, "-c",
                  "import django; from django.conf import settings; django.setup(); "
                  "d = settings.DATABASES['default']; "
                  "print(d['ENGINE'], d['HOST'], d['PORT'], d['NAME'], d['USER'], d['PASSWORD'])"],
                 cwd=ROOT / "app", env=dict(env, DJANGO_SETTINGS_MODULE="project.settings"), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 5) == [
        "django.db.backends.postgresql", "db.internal", "5432", "ebdb", "app", "p@ss w0rd\n"]


def test_postgres_driver_is_installed():
    """The prod pins carry the driver: with a PostgreSQL URL, migrate gets as far as
    connecting (here to a closed port), not to "Error loading psycopg module"."""
    env = dict(PROD_LIKE, DATABASE_URL=f"postgres://app:secret@127.0.0.1:{free_port()}/app?connect_timeout=5")
    result = manage("migrate", "--noinput", **env)
    assert result.returncode != 0
    assert "OperationalError" in result.stderr and "127.0.0.1" in result.stderr, result.stderr[-2000:]
    assert "Error loading psycopg" not in result.stderr


def test_dev_defaults_need_no_configuration(tmp_path):
    """ENV_DEBUG=true alone (the dev image's default): SQLite in app/db.sqlite3, localhost."""
    result = run([sys.executable, "-c",
                  "import django; from django.conf import settings; django.setup(); "
                  "print(settings.DATABASES['default']['NAME'], settings.ALLOWED_HOSTS)"],
                 cwd=ROOT / "app", timeout=60,
                 env={"PATH": "/usr/bin:/bin", "ENV_DEBUG": "true", "DJANGO_SETTINGS_MODULE": "project.settings"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{ROOT}/app/db.sqlite3 ['localhost', '127.0.0.1', '[::1]']"


def test_manage_py_test():
    env = {"PATH": "/usr/bin:/bin", "ENV_DEBUG": "true", "PYTHONDONTWRITEBYTECODE": "1"}
    result = run([sys.executable, "app/manage.py", "test", "--verbosity", "2", "project"],
                 cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stderr
