#!/usr/bin/env bash
# The database migrations of the version being deployed, run once per deployment by the
# leader_only container command of .ebextensions/10_migrate.config: as root on one instance,
# in the staging directory, before the new containers start.
#   bash .platform/scripts/migrate.sh [COMPOSE_FILE]
# It runs `procrun run -- python app/manage.py migrate --noinput` (procrun is the image's
# entrypoint) in a throwaway container of the django image named in the bundle's compose
# file (the digest bin/deploy pinned), with the environment properties (DATABASE_URL or the
# RDS_* variables, ENV_SECRET_KEY...) from get-config. Exits with the migration's status: a
# failure fails the deployment before anything was replaced.
# DOCKER, PYTHON, EB_GET_CONFIG and AWS (the CLIs) can be overridden, for the tests.
set -euo pipefail

compose=${1:-docker-compose.yml}
read -r -a docker <<<"${DOCKER:-docker}"
read -r -a python <<<"${PYTHON:-python3}"
read -r -a get_config <<<"${EB_GET_CONFIG:-/opt/elasticbeanstalk/bin/get-config}"
read -r -a aws <<<"${AWS:-aws}"
say() { printf 'migrate: %s\n' "$*" >&2; }

# The image: the django service's image: line (services at two spaces, keys at four).
image=$(awk '
    /^[^ #]/ { in_services = ($0 ~ /^services:/) }
    in_services && /^  [A-Za-z0-9._-]+:[ \t]*$/ { service = $1; sub(/:$/, "", service) }
    in_services && service == "django" && /^    image:/ { sub(/^    image:[ \t]*/, ""); print; exit }
' "$compose")
[[ -n "$image" ]] || { say "no image for the django service in $compose"; exit 1; }
if [[ "$image" == *\$\{* ]]; then
    say "$compose names $image: deploy the bundle bin/deploy makes (it pins the image), not the template"
    exit 1
fi
[[ "$image" == *@sha256:* ]] ||
    say "warning: $image is not pinned by digest (deploy with bin/deploy deploy, which pins it)"

# The environment properties, as a docker --env-file (KEY=VALUE lines, taken literally).
env_file=$(mktemp)
trap 'rm -f "$env_file"' EXIT
chmod 600 "$env_file"
"${get_config[@]}" environment | "${python[@]}" -c '
import json, sys
for key, value in json.load(sys.stdin).items():
    if "\n" in value or "\r" in value:
        sys.exit(f"migrate: environment property {key} contains a line break; not passed on")
    print(f"{key}={value}")
' >"$env_file"

# Normally the platform has pulled (and logged in to ECR) already; otherwise log in to the
# image's ECR registry with the instance profile and pull.
if ! "${docker[@]}" image inspect "$image" >/dev/null 2>&1 && ! "${docker[@]}" pull --quiet "$image" >/dev/null; then
    registry=${image%%/*}
    if [[ "$registry" =~ ^[0-9]{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com$ ]]; then
        say "logging in to $registry"
        "${aws[@]}" ecr get-login-password --region "${BASH_REMATCH[1]}" |
            "${docker[@]}" login --username AWS --password-stdin "$registry" >/dev/null
        "${docker[@]}" pull --quiet "$image" >/dev/null
    else
        say "cannot pull $image"
        exit 1
    fi
fi

say "running the migrations of $image"
status=0
"${docker[@]}" run --rm --env-file "$env_file" --env ENV_NAME=prod "$image" \
    run -- python app/manage.py migrate --noinput || status=$?
((status == 0)) || say "the migrations failed (exit $status)"
exit "$status"
