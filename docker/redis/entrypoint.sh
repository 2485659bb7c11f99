#!/bin/sh
# Like the upstream redis image: flags alone mean `redis-server <flags>`; protected mode is
# off unless the command line turns it back on (later flags win).
set -eu
if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = "redis-server" ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
