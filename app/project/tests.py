"""The app's own tests, run by `manage.py test` (and by the prod image's test stage)."""
import re
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import SimpleTestCase, TestCase, override_settings

from . import settings as project_settings


class HealthTests(SimpleTestCase):
    def test_health_ok(self):
        response = self.client.get("/health")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.content.startswith(b"ok"))

    def test_health_ignores_allowed_hosts(self):
        # What an AWS load balancer sends: the instance's private IP as Host.
        response = self.client.get("/health", HTTP_HOST="10.0.3.17")
        self.assertEqual(response.status_code, 200)

    @override_settings(SECURE_SSL_REDIRECT=True)
    def test_health_not_redirected_to_https(self):
        self.assertEqual(self.client.get("/health").status_code, 200)

    def test_other_paths_check_host(self):
        response = self.client.get("/", HTTP_HOST="evil.example")
        self.assertEqual(response.status_code, 400)


class PageTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        # Pages link the names collectstatic's manifest maps them to: collect into a
        # temporary STATIC_ROOT first.
        super().setUpClass()
        cls._static_root = tempfile.TemporaryDirectory()
        cls._static = override_settings(STATIC_ROOT=cls._static_root.name)
        cls._static.enable()
        call_command("collectstatic", "--noinput", verbosity=0)

    @classmethod
    def tearDownClass(cls):
        cls._static.disable()
        cls._static_root.cleanup()
        super().tearDownClass()

    def test_index_links_the_hashed_static_name(self):
        """Pages link the content-hashed names collectstatic writes (cacheable for a year)."""
        self.assertTrue(Path(self._static_root.name, "staticfiles.json").is_file())
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        match = re.search(rb'href="[^"]*css/app\.([0-9a-f]{12})\.css"', response.content)
        self.assertIsNotNone(match, response.content)
        self.assertTrue(Path(settings.BASE_DIR, "static/css/app.css").is_file())

    def test_scheme_comes_from_x_forwarded_proto(self):
        plain = self.client.get("/", HTTP_HOST="localhost")
        self.assertIn(b'rel="canonical" href="http://localhost/"', plain.content)
        secure = self.client.get("/", HTTP_HOST="localhost", HTTP_X_FORWARDED_PROTO="https")
        self.assertIn(b'rel="canonical" href="https://localhost/"', secure.content)

    @override_settings(ENABLE_TEST_VIEWS=False)
    def test_slow_hidden_by_default(self):
        self.assertEqual(self.client.get("/slow?seconds=0").status_code, 404)

    @override_settings(ENABLE_TEST_VIEWS=True)
    def test_slow_when_enabled(self):
        response = self.client.get("/slow?seconds=0")
        self.assertEqual(response.status_code, 200)


class DatabaseUrlTests(SimpleTestCase):
    def test_postgres_url(self):
        db = project_settings.database_from_url(
            "postgres://app%40corp:p%23ss%2Fword@db.internal:6432/shop?sslmode=require"
        )
        self.assertEqual(db["ENGINE"], "django.db.backends.postgresql")
        self.assertEqual((db["USER"], db["PASSWORD"]), ("app@corp", "p#ss/word"))
        self.assertEqual((db["HOST"], db["PORT"], db["NAME"]), ("db.internal", "6432", "shop"))
        self.assertEqual(db["OPTIONS"], {"sslmode": "require"})

    def test_sqlite_urls(self):
        self.assertEqual(project_settings.database_from_url("sqlite:////var/lib/app/db.sqlite3"),
                         {"ENGINE": "django.db.backends.sqlite3", "NAME": "/var/lib/app/db.sqlite3"})
        self.assertEqual(project_settings.database_from_url("sqlite://:memory:")["NAME"], ":memory:")

    def test_bad_urls_are_refused(self):
        for url in ("mysql://u:p@h/db", "sqlite:///relative.sqlite3", "postgres://host-only",
                    "postgres://u:p@h:port/db"):
            with self.subTest(url=url), self.assertRaises(ImproperlyConfigured):
                project_settings.database_from_url(url)


class MigrationTests(TestCase):
    def test_migrations_are_applied_to_the_test_database(self):
        tables = connection.introspection.table_names()
        self.assertIn("auth_user", tables)
        self.assertIn("django_content_type", tables)
