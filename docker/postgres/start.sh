#!/bin/sh
# Make the stack's cluster on the first start (superuser `prefect`, its password from the file
# `up` put in the container, readable by postgres alone), then run PostgreSQL. Who may connect:
# processes in this container through its socket, and the Prefect server, from its address on the
# stack's network ($PREFECT_SERVER_ADDRESS) with that password. The data is the demo's: no fsync.
set -eu
password=/run/prefect-aci/password
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb --username=prefect --pwfile="$password" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    printf 'local all all trust\nhost postgres prefect %s/32 scram-sha-256\n' \
        "$PREFECT_SERVER_ADDRESS" > "$PGDATA/pg_hba.conf"
fi
rm -f "$password"
exec postgres -c listen_addresses='*' -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=200
