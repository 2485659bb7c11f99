#!/bin/sh
# Like the upstream nginx image: every /etc/nginx/templates/*.template becomes
# $NGINX_ENVSUBST_OUTPUT_DIR/<name> (default /etc/nginx/conf.d) with the environment's
# variables filled in; variables that are not set stay as they are (nginx's own $vars).
set -eu
templates=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
output=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
if [ -d "$templates" ]; then
    defined=$(printf '${%s} ' $(env | cut -d= -f1))
    for t in "$templates"/*.template; do
        [ -e "$t" ] || continue
        name=$(basename "$t" .template)
        envsubst "$defined" <"$t" >"$output/$name"
        echo "entrypoint: $t -> $output/$name" >&2
    done
fi
exec "$@"
