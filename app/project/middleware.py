"""Answer the load balancer's health check before any host or HTTPS checks run.

The AWS load balancer sends `Host: <instance IP>`, which ALLOWED_HOSTS would reject with a 400,
and plain HTTP, which SECURE_SSL_REDIRECT would answer with a 301: both mark a healthy
instance as unhealthy. This middleware sits first in MIDDLEWARE.
"""
from .views import health

HEALTH_PATH = "/health"


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return health(request)
        return self.get_response(request)
