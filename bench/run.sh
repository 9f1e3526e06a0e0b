#!/usr/bin/env bash
# bench/run.sh — boxtrap against Postfix on this machine, in the same run:
# messages per second accepted and delivered into Maildir at 1, 20 and 100
# concurrent connections with 1 KiB and 64 KiB messages, plus peak memory.
#
#   bash bench/run.sh                 # COUNT=2000 messages per point, REPEATS=1
#   COUNT=5000 REPEATS=3 bash bench/run.sh
#
# Drives both servers with Postfix's smtp-source through the harness in
# ../shared/bench (peer-bench.sh: one new connection per message, no
# pipelining). Postfix is the system instance configured "Local only",
# listening on 127.0.0.1:$PF_PORT and delivering to ~bench/Maildir;
# boxtrap is a release build listening on 127.0.0.1:$BT_PORT with its data
# in $BT_DATA. Everything stays on loopback; no resolver is consulted.
# Results: $RESULTS/raw.txt (one key=value line per run) and a Markdown
# table with the boxtrap/Postfix ratios on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench}
COUNT=${COUNT:-2000}
REPEATS=${REPEATS:-1}
SIZES=${SIZES:-"1k 64k"}
CONCS=${CONCS:-"1 20 100"}
PF_PORT=${PF_PORT:-2601}
BT_PORT=${BT_PORT:-2602}
BT_DATA=${BT_DATA:-/var/tmp/boxtrap-bench}
RESULTS=${RESULTS:-$ROOT/bench-results}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_RELEASE:-/var/tmp/boxtrap-release}
export DEBIAN_FRONTEND=noninteractive

[[ -x $HARNESS/peer-bench.sh ]] || { echo "harness not found at $HARNESS (set HARNESS=)" >&2; exit 2; }

need=()
command -v smtp-source >/dev/null || need+=(postfix)
[[ -x /usr/bin/time ]] || need+=(time)
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

echo "== building boxtrap (release)"
cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" 2>&1 | tail -1
BOXTRAP=$CARGO_TARGET_DIR/release/boxtrap

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
grep -q "^127.0.0.1:$PF_PORT inet" /etc/postfix/master.cf || { echo "cannot set Postfix's listener in master.cf" >&2; exit 1; }
CG=/sys/fs/cgroup/cpuacct/peer-postfix
mkdir -p "$CG"
# Start Postfix inside its own cgroup so the harness sees all its processes.
( echo $BASHPID > "$CG/cgroup.procs"; postfix start >/dev/null 2>&1 )

# --- boxtrap ------------------------------------------------------------------
rm -rf "$BT_DATA"; mkdir -p "$BT_DATA"
cat > "$BT_DATA/boxtrap.toml" <<EOF
data_dir = "$BT_DATA"
hostname = "bench.example.test"
[smtp]
listen = ["127.0.0.1:$BT_PORT"]
max_connections_per_ip = 500
EOF
export BOXTRAP_CONFIG=$BT_DATA/boxtrap.toml
"$BOXTRAP" domain add example.test >/dev/null
"$BOXTRAP" mailbox add bench@example.test --no-password >/dev/null
"$BOXTRAP" serve 2>"$BT_DATA/serve.log" &
BT_PID=$!
cleanup() { kill "$BT_PID" 2>/dev/null || true; postfix stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$BT_PORT) 2>/dev/null && break
  sleep 0.1
done

mkdir -p "$RESULTS"
RAW=$RESULTS/raw.txt
: > "$RAW"
for rep in $(seq "$REPEATS"); do
  for size in $SIZES; do
    for conc in $CONCS; do
      echo "== repeat $rep: $size x $conc"
      LABEL=postfix MAILDIR=/home/bench/Maildir CGROUP=$CG \
        "$HARNESS/peer-bench.sh" "$PF_PORT" "$conc" "$COUNT" "$size" | tee -a "$RAW"
      LABEL=boxtrap MAILDIR=$BT_DATA/mail/example.test/bench SERVER_PID=$BT_PID \
        "$HARNESS/peer-bench.sh" "$BT_PORT" "$conc" "$COUNT" "$size" | tee -a "$RAW"
    done
  done
done

python3 - "$RAW" <<'EOF'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
    if "label" not in kv:
        continue
    runs[(kv["label"], kv["size"], kv["conc"])].append(kv)
def med(label, size, conc, key):
    vals = [float(r[key]) for r in runs.get((label, size, conc), []) if r.get(key) not in (None, "", "NA")]
    return statistics.median(vals) if vals else float("nan")
points = sorted({(s, c) for (_, s, c) in runs}, key=lambda p: (int(p[0]), int(p[1])))
print()
print("| size | conc | Postfix acc/s | boxtrap acc/s | Postfix dlv/s | boxtrap dlv/s | dlv ratio | Postfix peak MiB | boxtrap peak MiB | mem ratio |")
print("|---|---|---|---|---|---|---|---|---|---|")
for size, conc in points:
    pa, ba = med("postfix", size, conc, "accept_mps"), med("boxtrap", size, conc, "accept_mps")
    pd, bd = med("postfix", size, conc, "deliver_mps"), med("boxtrap", size, conc, "deliver_mps")
    pm, bm = med("postfix", size, conc, "peak_pss_mib"), med("boxtrap", size, conc, "peak_pss_mib")
    kib = int(size) // 1024
    print(f"| {kib} KiB | {conc} | {pa:.0f} | {ba:.0f} | {pd:.0f} | {bd:.0f} | {bd/pd:.2f}x | {pm:.1f} | {bm:.1f} | {bm/pm:.2f}x |")
EOF
