#!/usr/bin/env bash
# Vendor uPlot from the npm registry into dashboard/vendor/uplot/, so the dashboard loads no CDN.
# Reproducible: a pinned version whose tarball must match the pinned sha512 integrity.
# Needs npm, tar, openssl and base64; run from anywhere: ./dashboard/vendor.sh
set -euo pipefail

PACKAGE=uplot
VERSION=1.6.32
# From `npm view uplot@1.6.32 dist.integrity`, written here so a changed tarball fails the step.
INTEGRITY="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
FILES=(dist/uPlot.esm.js dist/uPlot.min.css LICENSE)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/vendor/uplot"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

registry="$(npm view "$PACKAGE@$VERSION" dist.integrity 2>/dev/null)"
if [[ "$registry" != "$INTEGRITY" ]]; then
    echo "vendor.sh: the registry reports integrity $registry for $PACKAGE@$VERSION, expected $INTEGRITY" >&2
    exit 1
fi

(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null 2>&1)
tarball="$work/$PACKAGE-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ "$actual" != "$INTEGRITY" ]]; then
    echo "vendor.sh: $tarball has integrity $actual, expected $INTEGRITY" >&2
    exit 1
fi

tar -xzf "$tarball" -C "$work" "${FILES[@]/#/package/}"
rm -rf "$dest"
mkdir -p "$dest"
for file in "${FILES[@]}"; do
    cp "$work/package/$file" "$dest/$(basename "$file")"
done
printf '%s@%s\n%s\n' "$PACKAGE" "$VERSION" "$INTEGRITY" >"$dest/VERSION"
echo "vendor.sh: $PACKAGE@$VERSION ($INTEGRITY) -> ${dest#"$here/"}/"
