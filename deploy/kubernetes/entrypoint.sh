#!/bin/sh
# Entry point of the mloop image: put the platform credentials where mloop reads them, then run the command.
#
# The Secret `mloop-platform` (the platform's secrets/platform.json) is mounted read-only at
# /etc/mloop/platform. mloop reads its credentials from MLOOP_HOME/secrets/platform.json and wants
# that file private (0600, owner only), which a mounted Secret cannot be: so it is copied there.
set -eu
source_file="${MLOOP_PLATFORM_SECRET:-/etc/mloop/platform/platform.json}"
target_dir="${MLOOP_HOME:?MLOOP_HOME is not set}/secrets"
if [ -f "$source_file" ]; then
    umask 077
    mkdir -p "$target_dir"
    chmod 700 "$MLOOP_HOME" "$target_dir"
    cp "$source_file" "$target_dir/platform.json.tmp"
    chmod 600 "$target_dir/platform.json.tmp"
    mv "$target_dir/platform.json.tmp" "$target_dir/platform.json"
fi
exec "$@"
