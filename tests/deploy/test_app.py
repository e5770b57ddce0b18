"""The app's QA step, as the prod image's test stage runs it (here in the test venv)."""
import secrets
import sys

from conftest import ROOT, run

PROD_LIKE = {
    "PATH": "/usr/bin:/bin",
    "ENV_DEBUG": "false",
    "ENV_SSL_REDIRECT": "true",
    "ENV_HSTS_SECONDS": "3600",
    "ENV_SECURE_COOKIES": "true",
    "ENV_ALLOWED_HOSTS": "example.com",
}


def test_check_deploy_passes_with_prod_settings():
    env = dict(PROD_LIKE, ENV_SECRET_KEY="build-only-" + secrets.token_urlsafe(50))
    result = run([sys.executable, "app/manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                 cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prod_settings_refuse_missing_secret_key():
    env = dict(PROD_LIKE)
    result = run([sys.executable, "app/manage.py", "check"], cwd=ROOT, env=env, timeout=60)
    assert result.returncode != 0
    assert "ENV_SECRET_KEY" in result.stderr


def test_manage_py_test():
    env = {"PATH": "/usr/bin:/bin", "ENV_DEBUG": "true", "PYTHONDONTWRITEBYTECODE": "1"}
    result = run([sys.executable, "app/manage.py", "test", "--verbosity", "2", "project"],
                 cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stderr
