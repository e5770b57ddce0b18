"""The app's own tests, run by `manage.py test` (and by the prod image's test stage)."""
from django.test import SimpleTestCase, override_settings


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
    def test_index_links_static(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"css/app.css", response.content)

    @override_settings(ENABLE_TEST_VIEWS=False)
    def test_slow_hidden_by_default(self):
        self.assertEqual(self.client.get("/slow?seconds=0").status_code, 404)

    @override_settings(ENABLE_TEST_VIEWS=True)
    def test_slow_when_enabled(self):
        response = self.client.get("/slow?seconds=0")
        self.assertEqual(response.status_code, 200)
