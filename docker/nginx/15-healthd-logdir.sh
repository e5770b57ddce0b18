#!/bin/sh
# Run by the official nginx image's entrypoint (/docker-entrypoint.d/) before nginx starts:
# the log directory may be a fresh host mount (Elastic Beanstalk's EB_LOG_BASE_DIR/nginx).
# The entrypoint runs as root, but nginx's worker processes write the healthd log: the
# directory must belong to the workers' user, else every request logs "Permission denied"
# and no healthd file appears. That user is the `user` directive of nginx.conf if any, else
# nginx's compiled-in user (nginx in the official image), else nobody.
set -eu
dir="${NGINX_LOG_DIR:-/var/log/nginx}/healthd"
mkdir -p "$dir"
user=$(sed -n 's/^[[:space:]]*user[[:space:]][[:space:]]*\([^[:space:];]*\).*/\1/p' \
    /etc/nginx/nginx.conf | head -n 1)
[ -n "$user" ] || user=$(nginx -V 2>&1 | tr ' ' '\n' | sed -n 's/^--user=//p' | head -n 1)
[ -n "$user" ] || user=nobody
chown "$user" "$dir" || echo "$0: cannot give $dir to $user: the healthd log may not be written" >&2
