#!/bin/sh
# Hot reload for weknora-app: build and run it; when a file under the source changes, stop
# it, rebuild and run again. A failed build waits for the next change.
set -u
cd /src
pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; exit 0' TERM INT
while :; do
    if cargo build --package weknora-app; then
        (cd /var/lib/weknora 2>/dev/null || cd /tmp; exec /target/debug/weknora-app) &
        pid=$!
    else
        echo "weknora-watch: build failed; waiting for a change" >&2
    fi
    inotifywait -qq -r -e close_write,create,delete,move \
        Cargo.toml Cargo.lock services crates config migrations &
    wait $!
    echo "weknora-watch: change detected, rebuilding" >&2
    stop
done
