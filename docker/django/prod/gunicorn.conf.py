"""gunicorn settings for the prod image (copied to /etc/gunicorn/gunicorn.conf.py).

Everything can be overridden from the environment, so tests and local runs need no edits.
Shutdown budget, innermost first: gunicorn's graceful_timeout (25 s) < procrun's
PROCRUN_TIMEOUT (30 s, SIGTERM -> SIGKILL) < the container stop timeout (compose
stop_grace_period / ECS stopTimeout, 40 s).
"""
import os

_host = os.environ.get("WEB_HOST", "0.0.0.0")
_port = os.environ.get("WEB_PORT", "8080")
bind = [f"{_host}:{_port}"]

# Not cpu_count() * 2 + 1: in a container that is the host's CPU count, not the quota.
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
keepalive = 5

# nginx (another container) sets X-Forwarded-For / X-Forwarded-Proto.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Heartbeat files on tmpfs rather than the overlay filesystem.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
accesslog = "-"
errorlog = "-"
capture_output = False
