#!/usr/bin/env bash
# Re-vendor Apache ECharts into the console's static assets: the pinned npm package's minified
# browser build, its licence and notice. The gateway serves these files itself (no CDN, no
# network at run time); CI needs neither npm nor a network.
#
#   gateway/console/static/vendor/update-echarts.sh [VERSION]     (default: the pinned one below)
#
# Then update ECHARTS_VERSION in gateway/console/pages.py if the version changed, run the
# console tests, and commit the three files.
set -euo pipefail
VERSION="${1:-6.1.0}"
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts --save-exact "echarts@${VERSION}" >/dev/null
PKG="$WORK/node_modules/echarts"
test "$(node -p "require('$PKG/package.json').version")" = "$VERSION"
cp "$PKG/dist/echarts.min.js" "$HERE/echarts.min.js"
cp "$PKG/LICENSE" "$HERE/echarts.LICENSE"
cp "$PKG/NOTICE" "$HERE/echarts.NOTICE" 2>/dev/null || true
sha256sum "$HERE/echarts.min.js" | sed "s#  .*#  echarts.min.js (echarts@${VERSION})#" > "$HERE/echarts.SHA256"
echo "vendored echarts ${VERSION} into ${HERE}"
