#!/usr/bin/env bash
# The one command that runs boxtrap's whole test suite on a Debian 12 machine,
# as root:   bash scripts/test.sh
#
# Provisions what the tests need (idempotent, non-interactive): swaks,
# Postfix (installed unconfigured and not running: the tests start private
# instances via tests/peers/postfix-relay.sh), PostgreSQL 15 with role and
# database `boxtrap`/`boxtrap_test`, GNU time, dnsmasq (a DNS server on
# loopback for MX tests), Chromium with chromedriver and Python's selenium
# (the verification page in a real browser), Node's npm and, with it,
# axe-core in tests/peers/node_modules (the accessibility check the owner's
# pages get in the browser; pinned by tests/peers/package-lock.json), and in
# a Python venv ($BOXTRAP_VENV, default /var/tmp/boxtrap-venv)
# openapi-spec-validator, which tests/it/web_authz.rs runs on
# docs/openapi.yaml. Then, failing fast:
# cargo fmt --check, cargo clippy (-D warnings), cargo test.
#
#   bash scripts/test.sh --setup-only   provision only, print the environment
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/boxtrap-target, shared by
# clones so builds are reused); PG_TEST_URL is set here for the tests, which
# fail without it.
set -euo pipefail

cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/boxtrap-target}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
# Non-login shells (CI) may lack rustup's PATH entry.
if ! command -v cargo >/dev/null && [[ -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
    PATH=${HOME:-/root}/.cargo/bin:$PATH
fi
export PATH=$PATH:/usr/sbin:/sbin

PG_VERSION=15
PG_CLUSTER=main
PG_ROLE=boxtrap
PG_PASSWORD=boxtrap
PG_DB=boxtrap_test

section() { printf '\n======== %s ========\n' "$*"; }
die() { echo "test.sh: $*" >&2; exit 1; }

setup_only=
case ${1:-} in
"") ;;
--setup-only) setup_only=1 ;;
*) die "usage: bash scripts/test.sh [--setup-only]" ;;
esac

((EUID == 0)) || die "run as root (installs packages, starts PostgreSQL and Postfix test peers)"

is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

install_packages() {
    section "system packages"
    # libnet-ssleay-perl lets swaks speak STARTTLS. python3-dkim (with
    # python3-authres for ARC) signs the auth tests' mail independently.
    local pkgs=(swaks libnet-ssleay-perl postfix postgresql-15 time python3 dnsmasq-base chromium chromium-driver python3-selenium python3-dkim python3-authres spamd python3-venv) missing=() p
    for p in "${pkgs[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
    # npm from Debian unless a Node.js with its own npm is there already.
    command -v npm >/dev/null || missing+=(nodejs npm)
    if ((${#missing[@]} == 0)); then
        echo "all present: ${pkgs[*]}"
        return 0
    fi
    echo "installing: ${missing[*]}"

    # Postfix unconfigured: no /etc/postfix/main.cf, so the system instance
    # cannot start and nothing listens on port 25.
    debconf-set-selections <<'EOF'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string boxtrap-test.example.test
EOF
    # Keep maintainer scripts from starting any daemon (PostgreSQL is
    # started below, explicitly). Only ours is removed afterwards.
    local own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local ok=1
    if ! apt-get update -q || ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        ok=
    fi
    [[ -z $own_policy ]] || rm -f /usr/sbin/policy-rc.d
    [[ -n $ok ]] || die "apt-get failed"

    # Belt and braces: if the package started a system Postfix anyway,
    # stop it; the tests only use private instances.
    if [[ " ${missing[*]} " == *" postfix "* && -f /etc/postfix/main.cf ]] &&
        postfix status >/dev/null 2>&1; then
        echo "stopping the system Postfix instance started by the install"
        postfix stop || true
    fi
}

# Start the cluster, create role and database (idempotent), export PG_TEST_URL.
setup_postgres() {
    section "PostgreSQL $PG_VERSION"
    if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { f = 1 } END { exit !f }'; then
        echo "creating cluster $PG_VERSION/$PG_CLUSTER"
        pg_createcluster "$PG_VERSION" "$PG_CLUSTER"
    fi
    local port
    port=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $3 }')
    if ! pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; then
        echo "starting cluster $PG_VERSION/$PG_CLUSTER"
        pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
    fi
    local i
    for ((i = 0; i < 60; i++)); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.5
    done
    pg_isready -h 127.0.0.1 -p "$port" || die "PostgreSQL is not accepting connections on 127.0.0.1:$port"

    # CREATEDB: the tests make a throw-away database per test.
    runuser -u postgres -- psql -p "$port" -X -q -v ON_ERROR_STOP=1 <<EOF
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
        CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    ELSE
        ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    END IF;
END
\$\$;
EOF
    if [[ $(runuser -u postgres -- psql -p "$port" -X -qAt -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") != 1 ]]; then
        runuser -u postgres -- createdb -p "$port" -O "$PG_ROLE" "$PG_DB"
    fi

    export PG_TEST_URL="postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$port/$PG_DB"
    # Password login over TCP, as the tests do (Debian's pg_hba allows
    # scram-sha-256 from 127.0.0.1).
    psql "$PG_TEST_URL" -X -qAt -c 'SELECT 1' >/dev/null ||
        die "cannot log in with $PG_TEST_URL: check pg_hba.conf for host 127.0.0.1/32"
    # Each test makes its own boxtrap_t_* database; drop those of earlier runs.
    runuser -u postgres -- psql -p "$port" -X -qAt -c \
        "SELECT datname FROM pg_database WHERE datname LIKE 'boxtrap\_t\_%'" |
        while read -r db; do
            runuser -u postgres -- psql -p "$port" -X -q -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
        done
    echo "PG_TEST_URL=$PG_TEST_URL"
}

check_toolchain() {
    section "toolchain"
    command -v cargo >/dev/null || die "cargo not found"
    cargo --version
    cargo fmt --version || die "rustfmt missing (rustup component add rustfmt)"
    cargo clippy --version || die "clippy missing (rustup component add clippy)"
    echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
}

# docs/openapi.yaml's validator (from PyPI, pinned), in a venv of its own.
install_openapi_validator() {
    section "openapi-spec-validator"
    export BOXTRAP_VENV=${BOXTRAP_VENV:-/var/tmp/boxtrap-venv}
    if [[ -x $BOXTRAP_VENV/bin/openapi-spec-validator ]]; then
        echo "present in $BOXTRAP_VENV"
        return 0
    fi
    python3 -m venv "$BOXTRAP_VENV"
    "$BOXTRAP_VENV/bin/pip" install --quiet openapi-spec-validator==0.9.0
}

# axe-core, as tests/peers/package-lock.json pins it; the browser test
# fails without it.
install_axe() {
    section "axe-core (npm)"
    local want have=
    want=$(sed -n 's/^ *"axe-core": "\(.*\)"$/\1/p' tests/peers/package.json)
    [[ -f tests/peers/node_modules/axe-core/package.json ]] &&
        have=$(sed -n 's/^ *"version": "\(.*\)",$/\1/p' tests/peers/node_modules/axe-core/package.json | head -1)
    if [[ -n $want && $have == "$want" ]]; then
        echo "axe-core $have present"
        return 0
    fi
    npm ci --prefix tests/peers --no-audit --no-fund || die "npm ci in tests/peers failed"
    [[ -f tests/peers/node_modules/axe-core/axe.min.js ]] || die "axe-core did not install"
}

install_packages
install_axe
setup_postgres
install_openapi_validator

if [[ -n $setup_only ]]; then
    section "setup done"
    printf 'export PG_TEST_URL=%q\nexport CARGO_TARGET_DIR=%q\nexport BOXTRAP_VENV=%q\n' "$PG_TEST_URL" "$CARGO_TARGET_DIR" "$BOXTRAP_VENV"
    exit 0
fi

check_toolchain

section "cargo fmt --check"
cargo fmt --check

section "cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

section "cargo test --locked"
cargo test --locked

section "all checks passed"
