#!/bin/sh
# The container's entry point, under tini: secrets from files, a writable data folder, then
# `gateway ARGS…` (docs/container.md). `docker run IMAGE check` runs `gateway check`.
# GATEWAY_DATA_DIRS: folders (relative to GATEWAY_DATA, colon-separated) to create before run.
set -eu

me=docker-entrypoint
[ "$#" -gt 0 ] || set -- run  # the image's CMD, when an orchestrator passes no arguments at all
data=${GATEWAY_DATA:-/var/lib/gateway}

fail() {
    echo "$me: $*" >&2
    exit 2
}

# NAME_FILE names a file (a Docker or compose secret) holding NAME's value: export NAME from it.
# Only these names: the PostgreSQL password (libpq reads PGPASSWORD), the signing service's
# token, the CLI's API token. gateway.toml itself references its secrets as { file = "…" }.
for name in PGPASSWORD GATEWAY_SIGNER_TOKEN GATEWAY_TOKEN; do
    eval "file=\${${name}_FILE:-}"
    [ -n "$file" ] || continue
    eval "already=\${${name}:-}"
    [ -z "$already" ] || fail "both $name and ${name}_FILE are set: set one"
    [ -f "$file" ] && [ -r "$file" ] || fail "${name}_FILE names $file, which is not a file uid $(id -u) can read" \
        "(is the secret mounted, and readable by that uid?)"
    value=$(cat "$file")  # without the trailing newline an editor leaves
    [ -n "$value" ] || fail "${name}_FILE names $file, which is empty"
    export "$name=$value"
    unset "${name}_FILE"
done

# The commands that write state need the data folder writable by this (non-root) user; a host
# folder mounted there keeps its host owner, which is the usual reason it is not.
case "$1" in
    run | demo | ingest)
        [ -d "$data" ] || fail "$data does not exist: mount a volume there (docker run -v gateway-data:$data)"
        probe="$data/.write-probe.$$"
        if ! (: >"$probe") 2>/dev/null; then
            fail "$data is not writable by uid $(id -u) gid $(id -g): use a named volume, or chown the host" \
                "folder to $(id -u):$(id -g) (docs/container.md)"
        fi
        rm -f "$probe"
        # Folders the configuration expects on the volume (a drop folder): the gateway never creates
        # a drop folder itself, because a missing one is usually a share that is not mounted.
        old_ifs=$IFS
        IFS=:
        set -f  # split on ':' only, no globbing
        for folder in ${GATEWAY_DATA_DIRS:-}; do
            case "/$folder/" in
                *"/../"* | //) fail "GATEWAY_DATA_DIRS: $folder is not a folder under $data" ;;
            esac
            mkdir -p "$data/${folder#/}"
        done
        set +f
        IFS=$old_ifs
        ;;
esac

exec gateway "$@"
