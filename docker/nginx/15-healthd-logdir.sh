#!/bin/sh
# Run by the official nginx image's entrypoint (/docker-entrypoint.d/) before nginx starts:
# the log directory may be a fresh host mount (Elastic Beanstalk's EB_LOG_BASE_DIR/nginx).
set -eu
mkdir -p "${NGINX_LOG_DIR:-/var/log/nginx}/healthd"
