#!/usr/bin/env bash
# Builds edgevoice_VERSION_ARCH.deb with dpkg-deb (no debhelper): the source tree in
# /opt/edgevoice, /etc/edgevoice/edgevoice.toml as a conffile, the unit in /lib/systemd/system,
# and maintainer scripts that build the venv on the target (see packaging/README.md).
#
#   packaging/build-deb.sh [--arch amd64|arm64] [--out DIR]    (default: this machine's, dist/)
set -euo pipefail
shopt -s inherit_errexit
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
# shellcheck source=packaging/lib.sh
. "$HERE/lib.sh"

ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
OUT=$SRC/dist
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) [ $# -ge 2 ] || { echo "build-deb.sh: --arch needs a value" >&2; exit 2; }; ARCH=$2; shift ;;
        --out) [ $# -ge 2 ] || { echo "build-deb.sh: --out needs a folder" >&2; exit 2; }; OUT=$2; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
case "$ARCH" in
    amd64|arm64) ;;
    *) echo "build-deb.sh: --arch must be amd64 or arm64, not $ARCH" >&2; exit 2 ;;
esac

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$SRC/pyproject.toml" | head -n 1)
[ -n "$VERSION" ] || { echo "build-deb.sh: no version in pyproject.toml" >&2; exit 1; }
DEB_VERSION=$VERSION-1

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
chmod 0755 "$STAGE"

# The source tree: nothing compiled in it, so the same files serve every architecture; the
# package is marked for one only because the venv its postinst builds is native code.
while IFS= read -r -d '' f; do
    ev_install_file "$SRC/$f" "$STAGE/opt/edgevoice/$f"
done < <(ev_source_files "$SRC")
install -D -m 0644 "$HERE/edgevoice.toml" "$STAGE/etc/edgevoice/edgevoice.toml"
install -D -m 0644 "$SRC/systemd/edgevoice.service" "$STAGE/lib/systemd/system/edgevoice.service"

install -d -m 0755 "$STAGE/DEBIAN"
installed_kb=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_SIZE@/$installed_kb/" \
    "$HERE/debian/control" >"$STAGE/DEBIAN/control"
chmod 0644 "$STAGE/DEBIAN/control"
install -m 0644 "$HERE/debian/conffiles" "$STAGE/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$HERE/debian/$script" "$STAGE/DEBIAN/$script"
done
find "$STAGE" -type d -exec chmod 0755 {} +

mkdir -p "$OUT"
deb=$OUT/edgevoice_${DEB_VERSION}_${ARCH}.deb
# --root-owner-group: every file root:root without fakeroot.
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$deb" >/dev/null
echo "$deb"
