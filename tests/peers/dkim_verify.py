#!/usr/bin/env python3
"""An independent DKIM verifier for tests (RFC 6376, Ed25519 per RFC 8463).

    /usr/bin/python3 tests/peers/dkim_verify.py MESSAGE RECORDS

MESSAGE is a file with the raw message as it went out (CRLF line endings).
RECORDS is a file of DNS TXT records in zone-file form, as `boxtrap dkim
generate` and `boxtrap dkim show` print them:

    sel._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=MIIB..." "..."

Lines starting with ';' are comments. Lookups are answered from these
records only (no DNS): a name without a record answers nothing.

Verifies every DKIM-Signature of the message with Debian's python3-dkim
(dkimpy, with python3-nacl for Ed25519) and prints one line per
signature, top first:

    <index> a=<algorithm> d=<domain> s=<selector> pass|fail

Why a signature failed, when dkimpy says, goes to standard error. Exits 0
when it could run (whatever the results), 2 on bad input.
"""

import re
import sys

import dkim
from dkim.util import parse_tag_value

STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def read_records(path):
    records = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            name, sep, rest = line.partition(" IN TXT ")
            if not sep:
                sys.exit(f"not a TXT record line: {line!r}")
            strings = STRING.findall(rest)
            if not strings:
                sys.exit(f"no quoted string in: {line!r}")
            # RFC 6376 §3.6.2.2: the strings of one record are joined.
            records[name.lower().rstrip(".")] = "".join(strings).encode("ascii")
    return records


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with open(sys.argv[1], "rb") as f:
        message = f.read()
    records = read_records(sys.argv[2])

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        return records.get(name.lower().rstrip("."))

    headers, _ = dkim.rfc822_parse(message)
    signatures = [v for (k, v) in headers if k.lower() == b"dkim-signature"]
    if not signatures:
        print("no DKIM-Signature")
        return
    verifier = dkim.DKIM(message, minkey=1024)
    for i, value in enumerate(signatures):
        tags = parse_tag_value(value)
        try:
            ok, why = verifier.verify(idx=i, dnsfunc=dnsfunc), ""
        except dkim.DKIMException as e:
            # dkimpy raises for some failures (a body hash mismatch) and
            # returns False for others (a bad signature).
            ok, why = False, str(e)
        print(
            "%d a=%s d=%s s=%s %s"
            % (
                i,
                tags.get(b"a", b"").decode(),
                tags.get(b"d", b"").decode(),
                tags.get(b"s", b"").decode(),
                "pass" if ok else "fail",
            )
        )
        if why:
            print("  (%s)" % why, file=sys.stderr)


if __name__ == "__main__":
    main()
