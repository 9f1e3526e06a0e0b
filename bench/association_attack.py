#!/usr/bin/env python3
"""The whitelist-by-association attack of issue 10 against a real `boxtrap
serve`: an allowed sender's message with 20,000 Cc addresses, then the next
message. Prints the rules it added, the server's memory (RSS) before and
after, and how long the attack message and the next ones took.

    python3 bench/association_attack.py BINARY [--association on|off|default] [--cc N]

BINARY is a boxtrap binary (e.g. target/release/boxtrap, or one built from
an older commit to compare); it runs on SQLite in a temporary directory,
on loopback ports. `--association on` turns whitelist by association on for
the mailbox first (`default` leaves the binary's default).
"""

import argparse
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--association", choices=["on", "off", "default"], default="default")
    p.add_argument("--cc", type=int, default=20_000)
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="boxtrap-attack-")
    smtp_port, web_port = free_port(), free_port()
    config = os.path.join(work, "boxtrap.toml")
    with open(config, "w") as f:
        f.write(
            f'data_dir = "{work}"\nhostname = "mx.example.test"\n'
            f'[smtp]\nlisten = ["127.0.0.1:{smtp_port}"]\n'
            f'[web]\nlisten = "127.0.0.1:{web_port}"\n'
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXTRAP_")}
    env["BOXTRAP_LOG"] = "error"

    def cli(*a):
        out = subprocess.run(
            [args.binary, "--config", config, *a], env=env, capture_output=True, text=True
        )
        if out.returncode != 0:
            sys.exit(f"boxtrap {' '.join(a)}: {out.stderr}")
        return out.stdout

    alice = "alice@example.test"
    cli("domain", "add", "example.test")
    cli("mailbox", "add", alice, "--no-password")
    cli("mailbox", "set", alice, "--challenge", "on")
    if args.association != "default":
        cli("mailbox", "set", alice, "--whitelist-by-association", args.association)
    cli("list", "add", alice, "allow", "bob@example.org")
    shown = cli("mailbox", "show", alice)
    setting = [l for l in shown.splitlines() if l.startswith("whitelist-by-association")]

    server = subprocess.Popen(
        [args.binary, "--config", config, "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

        def send(env_from, header_from, cc=(), mid="x"):
            lines = [f"From: {header_from}", f"To: {alice}"]
            if cc:
                lines.append("Cc: " + ",\r\n ".join(cc))
            lines += [f"Message-ID: <{mid}@bench.example>", "Subject: hello", "", "hi", ""]
            start = time.monotonic()
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=600) as s:
                s.sendmail(env_from, [alice], "\r\n".join(lines).encode())
            return time.monotonic() - start

        def allow_rules():
            return len(cli("list", "show", alice, "allow").splitlines())

        warm = send("bob@example.org", "bob@example.org", mid="warm")
        rules_before = allow_rules()
        rss_before = rss_mib(server.pid)
        cc = [f"attacker{i}@evil.example" for i in range(args.cc)]
        attack = send("bob@example.org", "bob@example.org", cc, mid="attack")
        rules_after = allow_rules()
        rss_attack = rss_mib(server.pid)
        following = send("attacker0@evil.example", "attacker0@evil.example", mid="next")
        stranger = send("stranger@other.example", "stranger@other.example", mid="stranger")
        rss_after = rss_mib(server.pid)
        peak = rss_mib(server.pid, "VmHWM")
        print(f"binary: {args.binary}")
        print(f"setting: {setting[0] if setting else 'whitelist-by-association: (not shown)'}")
        print(f"warm-up message: {warm * 1000:.0f} ms")
        print(f"allow rules: {rules_before} before, {rules_after} after ({rules_after - rules_before} added)")
        print(f"attack message ({args.cc} Cc): {attack * 1000:.0f} ms")
        print(f"next message (attacker0): {following * 1000:.0f} ms")
        print(f"then a stranger's message: {stranger * 1000:.0f} ms")
        print(
            f"RSS: {rss_before:.0f} MiB before, {rss_attack:.0f} MiB after the attack, "
            f"{rss_after:.0f} MiB after the next messages (peak {peak:.0f} MiB)"
        )
        log = cli("log", "--mailbox", alice, "--limit", "3")
        print("last activity lines:")
        for line in log.splitlines():
            print("  " + line)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
