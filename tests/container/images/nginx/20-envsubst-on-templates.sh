#!/bin/sh
# Test-only stand-in for the official nginx image's template step: every
# /etc/nginx/templates/NAME.template becomes /etc/nginx/conf.d/NAME, with only the
# environment variables that are set substituted (nginx's own $variables stay).
set -eu
template_dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
output_dir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
[ -d "$template_dir" ] || exit 0
defined=$(awk 'END { for (name in ENVIRON) printf "${%s} ", name }' </dev/null)
for template in "$template_dir"/*"$suffix"; do
    [ -f "$template" ] || continue
    name=$(basename "$template" "$suffix")
    echo "$0: rendering $template to $output_dir/$name"
    envsubst "$defined" <"$template" >"$output_dir/$name"
done
