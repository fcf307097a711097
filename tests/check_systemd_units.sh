#!/usr/bin/env bash
# Checks examples/systemd/ with systemd-analyze verify: the units must load
# without a warning, with ExecStart pointing at the built examples/hello.
# Usage: check_systemd_units.sh SOURCE_DIR HELLO_BINARY
set -euo pipefail
src=$1 hello=$2
dir=$(mktemp -d /tmp/cluster-units-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cp "$src"/*.service "$src"/*.socket "$dir"/
sed -i "s#/usr/local/bin/hello#$hello#" "$dir"/hello.service
cd "$dir"
out=$(systemd-analyze verify ./*.socket ./*.service 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "systemd-analyze verify warned:"; echo "$out"; exit 1; fi
echo "examples/systemd: $(ls "$dir" | tr '\n' ' ')verified"
