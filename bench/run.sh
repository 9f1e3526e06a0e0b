#!/usr/bin/env bash
# bench/run.sh — boxtrap against Postfix on this machine, in the same run,
# interleaved: messages per second at 1, 20 and 100 concurrent connections
# with 1 KiB and 64 KiB messages, plus boxtrap's peak memory, for
#
#   postfix          the reference: delivered into ~bench/Maildir (delivered/s)
#   boxtrap "plain"  mail to bench@example.test, challenge-response off:
#                    written into its Maildir before the 250 (delivered/s,
#                    which equals accepted/s)
#   boxtrap "held"   the same load to held@example.test, challenge-response
#                    on, from a sender it does not know: every message is
#                    held in the database quarantine before the 250. Held
#                    mail lands in no Maildir, so this is accepted/s (boxtrap
#                    stores before it answers 250: accepted = stored), and
#                    the run checks with `boxtrap quarantine count` that
#                    every message was held. The [challenge] rate limits are
#                    raised so none of them bites; the open challenge makes
#                    the sender get at most one challenge (written to the
#                    file outbox: nothing leaves the machine).
#
# each on every database backend in BACKENDS (default "sqlite postgres"):
#   sqlite    the default: $BT_DATA/sqlite/boxtrap.db
#   postgres  the local cluster ($PG_VERSION/$PG_CLUSTER, started if it is
#             not running; role boxtrap/boxtrap as scripts/test.sh makes
#             it) with a fresh database $PG_DB, dropped and re-created at
#             the start.
# One boxtrap server per backend runs for the whole run (127.0.0.1:$BT_PORT
# for the first backend, +1 for the next; data in $BT_DATA/<backend>), each
# with domain example.test and the two mailboxes. Held rows accumulate over
# the run, as in a real quarantine.
#
#   bash bench/run.sh                 # COUNT=2000 messages per point, REPEATS=1
#   COUNT=5000 REPEATS=3 bash bench/run.sh
#   COUNT=200 CONCS="1 20" SIZES=1k BACKENDS=sqlite bash bench/run.sh   # smoke test
#
# Knobs: COUNT, REPEATS, SIZES ("1k 64k"), CONCS ("1 20 100"), BACKENDS,
# PF_PORT, BT_PORT, BT_WEB_PORT, BT_DATA, PG_VERSION, PG_CLUSTER, PG_DB,
# RESULTS, HARNESS, BT_BIN (a boxtrap binary to use instead of building
# one); peer-bench.sh's own (QUIET_MAX, NICE, ...) pass through.
#
# Drives every server with Postfix's smtp-source through the harness in
# ../shared/bench (peer-bench.sh: one new connection per message, no
# pipelining, and smtp-source stops at the first non-2xx reply). Postfix is
# the system instance configured "Local only", listening on
# 127.0.0.1:$PF_PORT and delivering to ~bench/Maildir; boxtrap is a release
# build. Everything stays on loopback: boxtrap's only resolver is a dnsmasq
# started here on 127.0.0.1:$DNS_PORT, publishing SPF for the sender's
# domain (so every message is checked as real mail is, SPF passing, and
# the answers cached).
#
# Results: $RESULTS/raw.txt (one key=value line per run, with rep=, backend=,
# mode= and, for held runs, held_new= appended) and on stdout two Markdown
# tables (medians over REPEATS):
#   1. per backend, size, concurrency: Postfix delivered/s, boxtrap plain
#      delivered/s, boxtrap held accepted/s, held/plain (goal >= 0.8),
#      plain/Postfix, boxtrap's peak PSS (boxtrap's process only: the
#      PostgreSQL server's memory is not counted), and a "fails" column:
#      runs where smtp-source got a non-2xx reply (e.g. a 451 under load),
#      where fewer than COUNT messages reached the Maildir, or where fewer
#      than COUNT were held. Each failed run is listed under the tables.
#      In raw.txt, srv_cpu_* count boxtrap's process only: on postgres the
#      PostgreSQL server's CPU shows up in other_cpu_pct.
#   2. PostgreSQL / SQLite per size and concurrency: plain (goal >= 0.8),
#      and held for information.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench}
COUNT=${COUNT:-2000}
REPEATS=${REPEATS:-1}
SIZES=${SIZES:-"1k 64k"}
CONCS=${CONCS:-"1 20 100"}
BACKENDS=${BACKENDS:-"sqlite postgres"}
PF_PORT=${PF_PORT:-2601}
BT_PORT=${BT_PORT:-2602}
BT_WEB_PORT=${BT_WEB_PORT:-2612}
DNS_PORT=${DNS_PORT:-2622}
BT_DATA=${BT_DATA:-/var/tmp/boxtrap-bench}
PG_VERSION=${PG_VERSION:-15}
PG_CLUSTER=${PG_CLUSTER:-main}
PG_DB=${PG_DB:-boxtrap_bench}
PG_ROLE=boxtrap
PG_PASSWORD=boxtrap
RESULTS=${RESULTS:-$ROOT/bench-results}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_RELEASE:-/var/tmp/boxtrap-release}
export DEBIAN_FRONTEND=noninteractive
# Non-login shells may lack rustup's PATH entry.
if ! command -v cargo >/dev/null && [[ -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
  PATH=${HOME:-/root}/.cargo/bin:$PATH
fi
export PATH=$PATH:/usr/sbin:/sbin

PLAIN=bench@example.test
HELD=held@example.test
SENDER=sender@remote.test

die() { echo "bench/run.sh: $*" >&2; exit 1; }

[[ -x $HARNESS/peer-bench.sh ]] || die "harness not found at $HARNESS (set HARNESS=)"
for b in $BACKENDS; do
  case $b in sqlite|postgres) ;; *) die "unknown backend '$b' in BACKENDS (sqlite, postgres)";; esac
done
[[ -n ${BACKENDS// /} ]] || die "BACKENDS is empty"
want_pg=
[[ " $BACKENDS " == *" postgres "* ]] && want_pg=1

need=()
command -v smtp-source >/dev/null || need+=(postfix)
[[ -x /usr/bin/time ]] || need+=(time)
[[ -n $want_pg ]] && ! command -v pg_ctlcluster >/dev/null && need+=("postgresql-$PG_VERSION")
if ((${#need[@]})); then
  echo "== installing ${need[*]}"
  cat <<'EOC' | debconf-set-selections
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string bench.example.test
postfix postfix/destinations string bench.example.test, example.test, localhost
postfix postfix/relayhost string
EOC
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ -n ${BT_BIN:-} ]]; then
  BOXTRAP=$BT_BIN
  [[ -x $BOXTRAP ]] || die "BT_BIN=$BOXTRAP is not an executable"
  echo "== boxtrap: $BOXTRAP (BT_BIN, not built)"
else
  echo "== building boxtrap (release)"
  BUILD_LOG=$(mktemp /tmp/boxtrap-bench-build.XXXXXX)
  if ! cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" >"$BUILD_LOG" 2>&1; then
    tail -30 "$BUILD_LOG" >&2; rm -f "$BUILD_LOG"; die "release build failed"
  fi
  tail -1 "$BUILD_LOG"; rm -f "$BUILD_LOG"
  BOXTRAP=$CARGO_TARGET_DIR/release/boxtrap
fi

# --- PostgreSQL: a fresh database for this run ---------------------------------
PG_PORT=
if [[ -n $want_pg ]]; then
  echo "== PostgreSQL $PG_VERSION/$PG_CLUSTER: fresh database $PG_DB"
  PG_PORT=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $3 }')
  [[ -n $PG_PORT ]] || die "no PostgreSQL cluster $PG_VERSION/$PG_CLUSTER (pg_lsclusters)"
  pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1 ||
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
  for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.5; done
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL is not accepting connections on 127.0.0.1:$PG_PORT"
  psql_pg() { runuser -u postgres -- psql -p "$PG_PORT" -X -q -v ON_ERROR_STOP=1 "$@"; }
  # The role as scripts/test.sh makes it (idempotent; the tests use it too).
  psql_pg <<EOF
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
        CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    END IF;
END
\$\$;
EOF
  psql_pg -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
  psql_pg -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE" >/dev/null
  PG_URL="postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
fi

# --- Postfix, the reference -------------------------------------------------
id bench >/dev/null 2>&1 || useradd -m -s /usr/sbin/nologin bench
postfix stop >/dev/null 2>&1 || true
# scripts/test.sh installs Postfix with "No configuration": start from Debian's.
[[ -f /etc/postfix/main.cf ]] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
grep -q '^myhostname' /etc/postfix/main.cf || postconf -e 'myhostname = bench.example.test'
postconf -e 'mydestination = example.test, $myhostname, localhost.localdomain, localhost' \
            'home_mailbox = Maildir/' 'maillog_file = /var/log/postfix-bench.log' \
            'smtpd_peername_lookup = no' 'disable_dns_lookups = yes' \
            'inet_interfaces = loopback-only' 'inet_protocols = ipv4' \
            'relayhost =' 'default_transport = error:bench host delivers locally only' \
            'alias_maps = hash:/etc/aliases' 'alias_database = hash:/etc/aliases'
newaliases
# The smtpd line of master.cf listens on 127.0.0.1:$PF_PORT only.
sed -i -E "s/^[^# ]*smtp +inet +n +- +[yn] +- +- +smtpd\$/127.0.0.1:$PF_PORT inet n - y - - smtpd/" /etc/postfix/master.cf
grep -q "^127.0.0.1:$PF_PORT inet" /etc/postfix/master.cf || die "cannot set Postfix's listener in master.cf"
CG=/sys/fs/cgroup/cpuacct/peer-postfix
mkdir -p "$CG"

declare -A BT_PID BT_CONF BT_DIR BT_SMTP
DNS_PID=
cleanup() {
  local b
  for b in "${!BT_PID[@]}"; do kill "${BT_PID[$b]}" 2>/dev/null || true; done
  for b in "${!BT_PID[@]}"; do wait "${BT_PID[$b]}" 2>/dev/null || true; done
  [[ -z $DNS_PID ]] || kill "$DNS_PID" 2>/dev/null || true
  postfix stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
# Start Postfix inside its own cgroup so the harness sees all its processes.
( echo $BASHPID > "$CG/cgroup.procs"; postfix start >/dev/null 2>&1 )

# --- DNS for boxtrap ---------------------------------------------------------------
# SPF for the sender's domain; answers live 300 s so the resolver caches
# them. dnsmasq's NXDOMAIN carries no SOA and so is never cached (a real
# zone's is, RFC 2308): the TXT records at the _dmarc names DMARC asks for,
# which are no DMARC records, stand in for those cached negative answers.
command -v dnsmasq >/dev/null || PATH=$PATH:/usr/sbin
command -v dnsmasq >/dev/null || die "dnsmasq missing (apt-get install dnsmasq-base)"
sender_domain=${SENDER#*@}
dnsmasq --keep-in-foreground --listen-address=127.0.0.1 --bind-interfaces --port="$DNS_PORT" \
  --no-resolv --no-hosts --no-poll --conf-file=/dev/null --pid-file= --local=/#/ \
  --local-ttl=300 --neg-ttl=300 --log-facility=- \
  "--txt-record=$sender_domain,v=spf1 ip4:127.0.0.1 -all" \
  "--txt-record=_dmarc.$sender_domain,not a DMARC record" \
  "--txt-record=_dmarc.${sender_domain#*.},not a DMARC record" \
  2>"/tmp/boxtrap-bench-dnsmasq.log" &
DNS_PID=$!

# --- boxtrap: one server per backend ---------------------------------------------
rm -rf "$BT_DATA"; mkdir -p "$BT_DATA"
i=0
for b in $BACKENDS; do
  dir=$BT_DATA/$b
  mkdir -p "$dir"
  smtp_port=$((BT_PORT + i)) web_port=$((BT_WEB_PORT + i))
  i=$((i + 1))
  if [[ $b == postgres ]]; then db_url=$PG_URL; else db_url="sqlite://$dir/boxtrap.db"; fi
  cat > "$dir/boxtrap.toml" <<EOF
data_dir = "$dir"
hostname = "bench.example.test"
[smtp]
listen = ["127.0.0.1:$smtp_port"]
max_connections_per_ip = 500
[web]
listen = "127.0.0.1:$web_port"
[database]
url = "$db_url"
[challenge]
# Raised so that no limit bites: every message to $HELD is held, and its
# one unknown sender gets one challenge (the open one) for the whole run.
max_per_mailbox_hour = 100000000
max_per_domain_day = 100000000
max_global_hour = 100000000
# Held rows accumulate over the run (12,000 at the defaults): no quarantine
# quota, or the later points would get 452 4.2.2. The quota check still runs
# for every RCPT to $HELD.
quarantine_max_messages = 0
quarantine_max_bytes = 0
[outbound]
# Challenges go to $dir/outbox as .eml files: nothing leaves the machine.
mode = "file"
[dns]
servers = ["127.0.0.1:$DNS_PORT"]
EOF
  BT_CONF[$b]=$dir/boxtrap.toml BT_DIR[$b]=$dir BT_SMTP[$b]=$smtp_port
  bt() { BOXTRAP_CONFIG=${BT_CONF[$b]} "$BOXTRAP" "$@"; }
  bt migrate >/dev/null
  bt domain add example.test >/dev/null
  bt mailbox add "$PLAIN" --no-password >/dev/null
  bt mailbox add "$HELD" --no-password >/dev/null
  bt mailbox set "$HELD" --challenge on >/dev/null
  BOXTRAP_CONFIG=${BT_CONF[$b]} "$BOXTRAP" serve 2>"$dir/serve.log" &
  BT_PID[$b]=$!
  up=
  for _ in $(seq 150); do
    kill -0 "${BT_PID[$b]}" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [[ -n $up ]] || { tail -20 "$dir/serve.log" >&2; die "boxtrap ($b) did not start listening on 127.0.0.1:$smtp_port"; }
  echo "== boxtrap ($b): smtp 127.0.0.1:$smtp_port, web 127.0.0.1:$web_port, pid ${BT_PID[$b]}, data $dir"
done

held_count() {  # held messages for $HELD on backend $1 (CLI: its own pool)
  BOXTRAP_CONFIG=${BT_CONF[$1]} "$BOXTRAP" quarantine count --mailbox "$HELD" 2>/dev/null |
    grep -Eo '[0-9]+' | head -1 || true
}

mkdir -p "$RESULTS"
RAW=$RESULTS/raw.txt
: > "$RAW"
for rep in $(seq "$REPEATS"); do
  for size in $SIZES; do
    for conc in $CONCS; do
      echo "== repeat $rep: $size x $conc"
      line=$(LABEL=postfix MAILDIR=/home/bench/Maildir CGROUP=$CG \
        "$HARNESS/peer-bench.sh" "$PF_PORT" "$conc" "$COUNT" "$size")
      echo "$line rep=$rep backend=- mode=postfix" | tee -a "$RAW"
      for b in $BACKENDS; do
        line=$(LABEL=boxtrap-$b-plain TO=$PLAIN FROM=$SENDER \
          MAILDIR=${BT_DIR[$b]}/mail/example.test/bench SERVER_PID=${BT_PID[$b]} \
          "$HARNESS/peer-bench.sh" "${BT_SMTP[$b]}" "$conc" "$COUNT" "$size")
        echo "$line rep=$rep backend=$b mode=plain" | tee -a "$RAW"
        before=$(held_count "$b")
        line=$(LABEL=boxtrap-$b-held TO=$HELD FROM=$SENDER SERVER_PID=${BT_PID[$b]} \
          "$HARNESS/peer-bench.sh" "${BT_SMTP[$b]}" "$conc" "$COUNT" "$size")
        after=$(held_count "$b")
        new=NA
        [[ -n $before && -n $after ]] && new=$((after - before))
        echo "$line rep=$rep backend=$b mode=held held_new=$new" | tee -a "$RAW"
      done
    done
  done
done

echo
echo "== after the run"
for b in $BACKENDS; do
  kill -0 "${BT_PID[$b]}" 2>/dev/null || echo "boxtrap ($b) is no longer running: see ${BT_DIR[$b]}/serve.log"
  challenges=$(BOXTRAP_CONFIG=${BT_CONF[$b]} "$BOXTRAP" outbound list 2>/dev/null | grep -c . || true)
  rejects=$(grep -c . "${BT_DIR[$b]}/log/rejectlog" 2>/dev/null || true)
  errors=$(grep -Eci ' (error|warn)' "${BT_DIR[$b]}/serve.log" 2>/dev/null || true)
  echo "boxtrap ($b): held now $(held_count "$b"), outbound (challenges) ${challenges:-0} (expected 1: one sender)," \
       "rejectlog ${rejects:-0} lines, serve.log ${errors:-0} WARN/ERROR lines (${BT_DIR[$b]})"
done

python3 - "$RAW" <<'EOF'
import sys, shlex, statistics, collections

runs = collections.defaultdict(list)
backends = []
for line in open(sys.argv[1]):
    try:
        toks = shlex.split(line)
    except ValueError:
        toks = line.split()
    kv = dict(t.split("=", 1) for t in toks if "=" in t)
    if "label" not in kv:
        continue
    runs[(kv["backend"], kv["mode"], kv["size"], kv["conc"])].append(kv)
    if kv["backend"] != "-" and kv["backend"] not in backends:
        backends.append(kv["backend"])

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def problem(r):
    """Why this run failed, or None."""
    count = int(r["count"])
    why = []
    if r["rc"] != "0":
        why.append(f"smtp-source rc={r['rc']}" + (f": {r['err']}" if r.get("err") else ""))
    if r["mode"] in ("postfix", "plain"):
        d = num(r.get("delivered"))
        if d is None or d < count:
            why.append(f"delivered {r.get('delivered')}/{count}")
    if r["mode"] == "held":
        h = num(r.get("held_new"))
        if h is None or h != count:
            why.append(f"held {r.get('held_new')}/{count}")
    return "; ".join(why) or None

# Rate: delivered/s into the Maildir (postfix, plain), accepted/s (held).
RATE = {"postfix": "deliver_mps", "plain": "deliver_mps", "held": "accept_mps"}
def med(backend, mode, size, conc, key=None):
    vals = [num(r.get(key or RATE[mode])) for r in runs.get((backend, mode, size, conc), [])]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def fmt(v, d=0):
    return "–" if v is None else f"{v:.{d}f}"
def ratio(a, b, goal=None):
    if a is None or b is None or b == 0:
        return "–"
    s = f"{a / b:.2f}x"
    return s + (" ✗" if goal is not None and a / b < goal else "")

points = sorted({(s, c) for (_, _, s, c) in runs}, key=lambda p: (int(p[0]), int(p[1])))
def kib(size):
    n = int(size)
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"

failed = []
def fails(backend, size, conc):
    out = []
    for mode in ("plain", "held"):
        rs = runs.get((backend, mode, size, conc), [])
        bad = [r for r in rs if problem(r)]
        for r in bad:
            failed.append(r)
        if bad:
            out.append(f"{mode} {len(bad)}/{len(rs)}")
    return "⚠ " + ", ".join(out) if out else "0"

print()
print("Table 1: per backend. Postfix and boxtrap plain: delivered msg/s into the Maildir;")
print("boxtrap held: accepted msg/s (each held in the database before its 250).")
print("held/plain = boxtrap held / boxtrap plain (goal >= 0.8); plain/Postfix = boxtrap plain / Postfix.")
print("Peak MiB: boxtrap's process only (PSS). fails: runs with a non-2xx reply or a missing message (listed below). ✗ = below goal.")
print()
print("| backend | size | conc | Postfix dlv/s | plain dlv/s | held acc/s | held/plain | plain/Postfix | plain peak MiB | held peak MiB | fails |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for b in backends:
    for size, conc in points:
        pf = med("-", "postfix", size, conc)
        pl = med(b, "plain", size, conc)
        hd = med(b, "held", size, conc)
        pm = med(b, "plain", size, conc, "peak_pss_mib")
        hm = med(b, "held", size, conc, "peak_pss_mib")
        print(f"| {b} | {kib(size)} | {conc} | {fmt(pf)} | {fmt(pl)} | {fmt(hd)} | {ratio(hd, pl, 0.8)} "
              f"| {ratio(pl, pf)} | {fmt(pm, 1)} | {fmt(hm, 1)} | {fails(b, size, conc)} |")

if "sqlite" in backends and "postgres" in backends:
    print()
    print("Table 2: PostgreSQL against SQLite, same size and concurrency.")
    print("PG/SQLite plain = PostgreSQL plain dlv/s / SQLite plain dlv/s (goal >= 0.8); PG/SQLite held likewise for accepted/s (for information).")
    print()
    print("| size | conc | SQLite plain dlv/s | PostgreSQL plain dlv/s | PG/SQLite plain | SQLite held acc/s | PostgreSQL held acc/s | PG/SQLite held |")
    print("|---|---|---|---|---|---|---|---|")
    for size, conc in points:
        sp, pp = med("sqlite", "plain", size, conc), med("postgres", "plain", size, conc)
        sh, ph = med("sqlite", "held", size, conc), med("postgres", "held", size, conc)
        print(f"| {kib(size)} | {conc} | {fmt(sp)} | {fmt(pp)} | {ratio(pp, sp, 0.8)} | {fmt(sh)} | {fmt(ph)} | {ratio(ph, sh)} |")

for (b, mode, size, conc), rs in runs.items():
    if mode == "postfix":
        failed.extend(r for r in rs if problem(r))
print()
if failed:
    print(f"Failed runs ({len(failed)}):")
    for r in failed:
        print(f"- {r['label']} {kib(r['size'])} x {r['conc']} repeat {r['rep']}: {problem(r)}")
else:
    print("Failed runs: none (every message got 2xx, was delivered or held).")
EOF
