#!/bin/sh
# Re-vendors the console's front-end packages from npm, as pinned by package-lock.json:
# installs them in a temporary directory and copies only the files the console embeds
# (crates/console/src/map.rs includes them with include_bytes!).
#
#   sh crates/console/assets/vendor/update.sh
#
# To move to a new Leaflet, change its version in package.json, delete package-lock.json,
# run this script (it writes the new lock back) and review the diff.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$work/"
if [ -f "$here/package-lock.json" ]; then
    cp "$here/package-lock.json" "$work/"
    (cd "$work" && npm ci --ignore-scripts --no-audit --no-fund)
else
    (cd "$work" && npm install --ignore-scripts --no-audit --no-fund)
    cp "$work/package-lock.json" "$here/"
fi
dist="$work/node_modules/leaflet/dist"
rm -rf "$here/leaflet"
mkdir -p "$here/leaflet/images"
cp "$dist/leaflet.js" "$dist/leaflet.css" "$here/leaflet/"
cp "$dist/images/"*.png "$here/leaflet/images/"
cp "$work/node_modules/leaflet/LICENSE" "$here/leaflet/LICENSE"
echo "vendored leaflet $(node -p "require('$work/node_modules/leaflet/package.json').version") into $here/leaflet"
