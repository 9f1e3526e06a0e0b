#!/usr/bin/env python3
"""An independent DKIM signer for tests (RFC 6376; Ed25519 per RFC 8463).

    /usr/bin/python3 tests/peers/dkim_sign.py keygen rsa|ed25519 KEYFILE
        writes a new private key to KEYFILE and prints the DKIM TXT record
        value to publish (v=DKIM1; k=...; p=...)

    /usr/bin/python3 tests/peers/dkim_sign.py sign rsa|ed25519 KEYFILE SELECTOR DOMAIN
        reads a message (CRLF line endings) on standard input and writes it
        to standard output with a DKIM-Signature on top (relaxed/relaxed,
        From, To, Subject, Date and Message-ID signed)

Uses Debian's python3-dkim (dkimpy) with python3-nacl for Ed25519 and the
openssl command for RSA keys. Exits 2 on bad input.
"""

import base64
import subprocess
import sys

import dkim


def keygen(alg, keyfile):
    if alg == "rsa":
        subprocess.run(
            ["openssl", "genrsa", "-out", keyfile, "2048"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        der = subprocess.run(
            ["openssl", "rsa", "-in", keyfile, "-pubout", "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        print("v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode())
    elif alg == "ed25519":
        import nacl.signing

        key = nacl.signing.SigningKey.generate()
        with open(keyfile, "wb") as f:
            f.write(base64.b64encode(bytes(key)))
        public = base64.b64encode(bytes(key.verify_key)).decode()
        print("v=DKIM1; k=ed25519; p=" + public)
    else:
        sys.exit(2)


def sign(alg, keyfile, selector, domain):
    with open(keyfile, "rb") as f:
        key = f.read()
    message = sys.stdin.buffer.read()
    algorithm = b"rsa-sha256" if alg == "rsa" else b"ed25519-sha256"
    signature = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key,
        signature_algorithm=algorithm,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        canonicalize=(b"relaxed", b"relaxed"),
    )
    # dkimpy folds with bare LF; the message is CRLF.
    signature = signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    sys.stdout.buffer.write(signature + message)


def main(argv):
    if len(argv) == 4 and argv[1] == "keygen":
        keygen(argv[2], argv[3])
    elif len(argv) == 6 and argv[1] == "sign":
        sign(argv[2], argv[3], argv[4], argv[5])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
