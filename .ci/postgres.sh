# Sourced by .ci/run: starts one throwaway PostgreSQL cluster on loopback
# (initdb into a temporary directory, run as the postgres user, since the
# server refuses root) and exports SPRAYWATCH_TEST_POSTGRES for the tests.
# Tests that must stop and restart a server start their own the same way
# (detect/postgres/pgtest). The cluster is stopped and removed on exit.
pgbin=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
  if [ -x "$d/initdb" ]; then pgbin="$d"; break; fi
done
if [ -z "$pgbin" ]; then
  echo "ci: postgresql not installed" >&2
  exit 1
fi
pgdir="$(mktemp -d /tmp/spraywatch-ci-pg.XXXXXX)"
pgrun=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$pgdir"
  pgrun=(runuser -u postgres --)
fi
printf '%s\n' ci-password >"$pgdir/pwfile"
chmod 600 "$pgdir/pwfile"
[ "$(id -u)" = 0 ] && chown postgres: "$pgdir/pwfile"
"${pgrun[@]}" "$pgbin/initdb" -D "$pgdir/data" -U spraywatch --pwfile "$pgdir/pwfile" \
  --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --no-locale --no-sync >/dev/null
pgport=55432
"${pgrun[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir -c fsync=off -c max_connections=300" start >/dev/null
trap '"${pgrun[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pgdir"' EXIT
export SPRAYWATCH_TEST_POSTGRES="postgres://spraywatch:ci-password@127.0.0.1:$pgport/postgres?sslmode=disable"
echo "ci: PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport"
