#!/usr/bin/env bash
# bench/auth.sh — what SPF, DKIM, DMARC and spamd cost a held message, in the
# same run, interleaved:
#
#   noauth   [auth] enabled = false: no checks at all (the reference)
#   auth     SPF, DKIM (RSA-2048) and DMARC checked for every message, the
#            answers from a dnsmasq on loopback and then hickory's cache
#   spamd    as auth, and every message scored by SpamAssassin's spamd
#            (Debian's, --local, no Bayes) on loopback
#
# Three boxtrap servers (release build, SQLite), each holding every message
# for held@example.test (challenge-response on; the relaxed mode, so that all
# three hold the same way: one challenge for the one sender, then
# challenge-open). Every message is the same DKIM-signed 1 KiB message from
# sender@sender.example, whose domain publishes SPF (ip4:127.0.0.1), the DKIM
# key and DMARC p=none; smtp-source sends it (-F) through the harness in
# ../shared/bench (peer-bench.sh), which reads each server's CPU time.
#
# Prints per concurrency the medians of server CPU ms per message and of
# wall time per message, and the ratios auth/noauth and spamd/auth (CPU),
# and the latency spamd adds per message at 1 connection. Goal (the
# authentication issue): auth costs at most 1.25x noauth in server CPU.
#
#   bash bench/auth.sh                 # COUNT=1000 (SPAMD_COUNT=200) per point, REPEATS=3, CONCS="1 20"
#   COUNT=200 REPEATS=1 bash bench/auth.sh   # smoke test
#
# Everything stays on loopback: the servers' only resolver is the dnsmasq
# started here, challenges go to the file outbox.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench}
COUNT=${COUNT:-1000}
SPAMD_COUNT=${SPAMD_COUNT:-200}   # spamd scores some 10-15 messages a second here
REPEATS=${REPEATS:-3}
CONCS=${CONCS:-"1 20"}
BASE_PORT=${BASE_PORT:-26250}
WORK=${WORK:-/tmp/boxtrap-bench-auth}
RESULTS=${RESULTS:-$WORK/results}
PYTHON=/usr/bin/python3
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/boxtrap-release}

die() { echo "bench/auth.sh: $*" >&2; exit 1; }
[[ -x $HARNESS/peer-bench.sh ]] || die "no harness at $HARNESS"
command -v dnsmasq >/dev/null || PATH=$PATH:/usr/sbin
command -v dnsmasq >/dev/null || die "dnsmasq missing (apt-get install dnsmasq-base)"
[[ -x /usr/sbin/spamd ]] || die "spamd missing (apt-get install spamd)"
$PYTHON -c 'import dkim' 2>/dev/null || die "python3-dkim missing"

if [[ -n ${BT_BIN:-} ]]; then
  BOXTRAP=$BT_BIN
else
  echo "== building boxtrap (release)"
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" >/dev/null 2>&1 ||
    die "cargo build --release failed"
  BOXTRAP=$CARGO_TARGET_DIR/release/boxtrap
fi

rm -rf "$WORK"; mkdir -p "$WORK" "$RESULTS"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# --- DNS: SPF, DKIM and DMARC for sender.example -------------------------------
# Answers live 300 s, so the resolver's cache holds them. dnsmasq's NXDOMAIN
# carries no SOA, which no resolver caches (a real zone's does, RFC 2308):
# the TXT at _dmarc.example (DMARC's tree walk asks the parent, RFC 9989),
# which is no DMARC record, stands in for that cached negative answer.
record=$($PYTHON "$ROOT/tests/peers/dkim_sign.py" keygen rsa "$WORK/dkim.key")
dkim_pieces=$($PYTHON -c 'import sys; r=sys.argv[1]; print(",".join(r[i:i+255] for i in range(0, len(r), 255)))' "$record")
DNS_PORT=$((BASE_PORT + 9))
dnsmasq --keep-in-foreground --listen-address=127.0.0.1 --bind-interfaces --port=$DNS_PORT \
  --no-resolv --no-hosts --no-poll --conf-file=/dev/null --pid-file= --local=/#/ \
  --local-ttl=300 --neg-ttl=300 \
  "--txt-record=sender.example,v=spf1 ip4:127.0.0.1 -all" \
  "--txt-record=bench._domainkey.sender.example,$dkim_pieces" \
  "--txt-record=_dmarc.sender.example,v=DMARC1; p=none" \
  "--txt-record=_dmarc.example,not a DMARC record" \
  --log-facility=- ${DNS_LOG:+--log-queries} 2>"$WORK/dnsmasq.log" &
PIDS+=($!)

# --- spamd -----------------------------------------------------------------------
SPAMD_PORT=$((BASE_PORT + 8))
mkdir -p "$WORK/spamd/home"
cp /etc/spamassassin/*.pre "$WORK/spamd/" 2>/dev/null || true
printf 'use_bayes 0\nbayes_auto_learn 0\nskip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\nuse_dcc 0\n' >"$WORK/spamd/local.cf"
chmod 755 "$WORK" "$WORK/spamd" "$WORK/spamd/home"
/usr/sbin/spamd --local --nouser-config --syslog=stderr --listen=127.0.0.1:$SPAMD_PORT \
  --allowed-ips=127.0.0.1 --siteconfigpath="$WORK/spamd" --configpath=/usr/share/spamassassin \
  --helper-home-dir="$WORK/spamd/home" --max-children=2 --min-children=1 --min-spare=1 \
  2>"$WORK/spamd.log" &
PIDS+=($!)

# --- the message -----------------------------------------------------------------
$PYTHON -c '
import sys
body = "".join("x" * 69 + "\r\n" for _ in range(10))
sys.stdout.write("From: Sender <sender@sender.example>\r\nTo: held@example.test\r\n"
                 "Subject: a benchmark message\r\nDate: Fri, 27 Nov 2026 14:05:53 +0000\r\n"
                 "Message-ID: <bench@sender.example>\r\n\r\n" + body)' |
  $PYTHON "$ROOT/tests/peers/dkim_sign.py" sign rsa "$WORK/dkim.key" bench sender.example |
  tr -d '\r' >"$WORK/message.eml"   # smtp-source ends each line with CRLF itself

# smtp-source sends the signed message (-F) instead of making one; the
# harness always passes -l SIZE, which -F refuses: a wrapper drops it.
cat >"$WORK/smtp-source" <<EOF
#!/usr/bin/env bash
args=()
while [[ \$# -gt 0 ]]; do
  if [[ \$1 == -l ]]; then shift 2; continue; fi
  args+=("\$1"); shift
done
exec /usr/sbin/smtp-source -F "$WORK/message.eml" "\${args[@]}"
EOF
chmod +x "$WORK/smtp-source"
export SMTP_SOURCE=$WORK/smtp-source

# --- three servers -----------------------------------------------------------------
declare -A SMTP PID
i=0
for mode in noauth auth spamd; do
  dir=$WORK/$mode
  mkdir -p "$dir"
  port=$((BASE_PORT + i)) web=$((BASE_PORT + 10 + i))
  i=$((i + 1))
  enabled=true spamd_addr=""
  [[ $mode == noauth ]] && enabled=false
  [[ $mode == spamd ]] && spamd_addr="127.0.0.1:$SPAMD_PORT"
  cat >"$dir/boxtrap.toml" <<EOF
data_dir = "$dir"
hostname = "bench.example.test"
[smtp]
listen = ["127.0.0.1:$port"]
max_connections_per_ip = 500
[web]
listen = "127.0.0.1:$web"
[challenge]
max_per_mailbox_hour = 100000000
max_per_domain_day = 100000000
max_per_address_day = 100000000
max_global_hour = 100000000
quarantine_max_messages = 0
quarantine_max_bytes = 0
[outbound]
mode = "file"
[dns]
servers = ["127.0.0.1:$DNS_PORT"]
[auth]
enabled = $enabled
challenge_unauthenticated = true
[spamd]
address = "$spamd_addr"
timeout = "60s"
EOF
  bt() { BOXTRAP_CONFIG=$dir/boxtrap.toml "$BOXTRAP" "$@"; }
  bt migrate >/dev/null
  bt domain add example.test >/dev/null
  bt mailbox add held@example.test --no-password >/dev/null
  bt mailbox set held@example.test --challenge on >/dev/null
  BOXTRAP_CONFIG=$dir/boxtrap.toml "$BOXTRAP" serve 2>"$dir/serve.log" &
  PID[$mode]=$! SMTP[$mode]=$port
  PIDS+=($!)
done
for mode in noauth auth spamd; do
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/${SMTP[$mode]}") 2>/dev/null && break
    sleep 0.1
  done
done
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$SPAMD_PORT") 2>/dev/null && break
  sleep 0.2
done

# One message each first: the checks' answers are cached, spamd warm.
for mode in noauth auth spamd; do
  FROM=sender@sender.example TO=held@example.test \
    QUIET_MAX=0 "$HARNESS/peer-bench.sh" "${SMTP[$mode]}" 1 5 1k >/dev/null
done

RAW=$RESULTS/raw.txt
: >"$RAW"
for rep in $(seq "$REPEATS"); do
  for conc in $CONCS; do
    for mode in noauth auth spamd; do
      n=$COUNT
      [[ $mode == spamd ]] && n=$SPAMD_COUNT
      line=$(LABEL=$mode FROM=sender@sender.example TO=held@example.test SERVER_PID=${PID[$mode]} \
        "$HARNESS/peer-bench.sh" "${SMTP[$mode]}" "$conc" "$n" 1k)
      echo "$line rep=$rep mode=$mode conc=$conc" | tee -a "$RAW"
    done
  done
done

# Every message was held (5 warm-up messages and COUNT per run), and the
# auth server's with our results: the checks really ran.
for mode in noauth auth spamd; do
  per=$COUNT
  [[ $mode == spamd ]] && per=$SPAMD_COUNT
  want=$((5 + per * REPEATS * $(wc -w <<<"$CONCS")))
  n=$(BOXTRAP_CONFIG=$WORK/$mode/boxtrap.toml "$BOXTRAP" quarantine count --mailbox held@example.test | grep -Eo '[0-9]+' | head -1)
  echo "== $mode: $n held (expected $want)"
  [[ $n == "$want" ]] || echo "!! $mode: not every message was held" >&2
done
id=$(BOXTRAP_CONFIG=$WORK/auth/boxtrap.toml "$BOXTRAP" quarantine list --mailbox held@example.test | awk 'NR == 2 { print $1 }')
BOXTRAP_CONFIG=$WORK/auth/boxtrap.toml "$BOXTRAP" quarantine show "$id" | grep -E "^(reason|authentication|spam-score):" || true
id=$(BOXTRAP_CONFIG=$WORK/spamd/boxtrap.toml "$BOXTRAP" quarantine list --mailbox held@example.test | awk 'NR == 2 { print $1 }')
BOXTRAP_CONFIG=$WORK/spamd/boxtrap.toml "$BOXTRAP" quarantine show "$id" | grep -E "^spam-score:" || true

$PYTHON - "$RAW" "$CONCS" <<'EOF'
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in open(sys.argv[1])]
print("\n| conc | mode | rc | server CPU ms/msg | wall ms/msg |")
print("|---|---|---|---|---|")
med = {}
for conc in sys.argv[2].split():
    for mode in ("noauth", "auth", "spamd"):
        rs = [r for r in rows if r["mode"] == mode and r["conc"] == conc]
        cpu = statistics.median(float(r["srv_cpu_ms_per_msg"]) for r in rs)
        wall = statistics.median(1000 / float(r["accept_mps"]) for r in rs)
        rcs = ",".join(sorted({r["rc"] for r in rs}))
        med[(conc, mode)] = (cpu, wall)
        print(f"| {conc} | {mode} | {rcs} | {cpu:.2f} | {wall:.2f} |")
print()
for conc in sys.argv[2].split():
    a, n, s = med[(conc, "auth")], med[(conc, "noauth")], med[(conc, "spamd")]
    print(f"conc {conc}: server CPU auth/noauth = {a[0] / n[0]:.2f}x (goal <= 1.25x); "
          f"spamd/auth = {s[0] / a[0]:.2f}x; spamd adds {s[1] - a[1]:.1f} ms per message (wall)")
EOF
