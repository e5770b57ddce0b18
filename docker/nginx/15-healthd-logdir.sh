#!/bin/sh
# Run by the official nginx image's entrypoint (/docker-entrypoint.d/) before nginx starts,
# when HEALTHD_LOG=on (Elastic Beanstalk): the log directory may be a fresh host mount
# (EB_LOG_BASE_DIR/nginx). The entrypoint runs as root, but nginx's worker processes write
# the healthd log: the directory must belong to the workers' user, else every request logs
# "Permission denied" and no healthd file appears. That user is the `user` directive of
# nginx.conf if any, else nginx's compiled-in user (nginx in the official image), else nobody.
# NGINX_CONF and NGINX_BIN exist for the offline tests, which run it outside the image.
set -eu
[ "${HEALTHD_LOG:-off}" = on ] || exit 0
dir="${NGINX_LOG_DIR:-/var/log/nginx}/healthd"
conf=${NGINX_CONF:-/etc/nginx/nginx.conf}
mkdir -p "$dir"
user=$(sed -n 's/^[[:space:]]*user[[:space:]][[:space:]]*\([^[:space:];]*\).*/\1/p' "$conf" | head -n 1)
[ -n "$user" ] || user=$("${NGINX_BIN:-nginx}" -V 2>&1 | tr ' ' '\n' | sed -n 's/^--user=//p' | head -n 1)
[ -n "$user" ] || user=nobody
if [ "$(id -u)" != 0 ]; then
    # nginx runs as this user too (no user switch without root): nothing to hand over.
    exit 0
fi
chown "$user" "$dir" || echo "$0: cannot give $dir to $user: the healthd log may not be written" >&2
