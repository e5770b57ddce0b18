#!/usr/bin/env bash
# Elastic Beanstalk (Amazon Linux 2023) postdeploy hook: each deploy pulls new images;
# remove the ones no container uses any more so the instance's disk does not fill up.
set -euo pipefail
docker image prune --all --force --filter "until=24h" >/dev/null
