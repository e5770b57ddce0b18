#!/bin/sh
# Test-only stand-in for the official nginx image's entrypoint: when the command is nginx,
# source the executable *.envsh and run the executable *.sh files of /docker-entrypoint.d/
# in name order, then exec the command.
set -eu
if [ "${1:-}" = nginx ] || [ "${1:-}" = nginx-debug ]; then
    for f in /docker-entrypoint.d/*; do
        [ -f "$f" ] || continue
        case "$f" in
            *.envsh)
                if [ -x "$f" ]; then
                    echo "$0: sourcing $f"
                    # shellcheck disable=SC1090
                    . "$f"
                else
                    echo "$0: ignoring $f, not executable"
                fi
                ;;
            *.sh)
                if [ -x "$f" ]; then
                    echo "$0: launching $f"
                    "$f"
                else
                    echo "$0: ignoring $f, not executable"
                fi
                ;;
            *) echo "$0: ignoring $f" ;;
        esac
    done
    echo "$0: ready for start up"
fi
exec "$@"
