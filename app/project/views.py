import logging
import os
import time

from django.conf import settings
from django.http import Http404, HttpResponse
from django.templatetags.static import static
from django.utils.html import escape

logger = logging.getLogger(__name__)


def health(request):
    """Liveness for load balancers and container health checks: no database, no templates."""
    return HttpResponse(f"ok pid={os.getpid()}\n", content_type="text/plain")


def index(request):
    css = static("css/app.css")
    # The absolute URL shows the scheme Django believes the request came with (from
    # X-Forwarded-Proto behind the load balancer and nginx).
    canonical = escape(request.build_absolute_uri("/"))
    body = (
        "<!doctype html><html><head><title>procrun reference app</title>"
        f'<link rel="canonical" href="{canonical}">'
        f'<link rel="stylesheet" href="{escape(css)}"></head>'
        "<body><h1>procrun reference app</h1></body></html>"
    )
    return HttpResponse(body)


def slow(request):
    """Sleep, then answer: lets tests keep a request in flight during shutdown.

    Only reachable when ENV_TEST_VIEWS is on.
    """
    if not settings.ENABLE_TEST_VIEWS:
        raise Http404()
    try:
        seconds = min(float(request.GET.get("seconds", "2")), 30.0)
    except ValueError:
        seconds = 2.0
    logger.info("slow request: sleeping %.1f s", seconds)
    time.sleep(seconds)
    return HttpResponse(f"slept {seconds}\n", content_type="text/plain")
