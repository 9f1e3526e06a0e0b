//! Removing forged `Authentication-Results:` header fields (RFC 8601 §5).

use std::borrow::Cow;

/// The message without the `Authentication-Results:` header fields whose
/// authserv-id is `authserv_id` (compared case-insensitively, a trailing dot
/// ignored), each with its folded continuation lines. RFC 8601 §5: results
/// claiming to be ours that arrive with the message are forgeries and must
/// go before we add our own. Every other header field, the blank line and
/// the body are kept byte for byte; lines may end in CRLF or LF. Borrowed
/// when nothing was removed.
pub fn strip_own_results<'a>(message: &'a [u8], authserv_id: &str) -> Cow<'a, [u8]> {
    let ours = authserv_id.trim_end_matches('.');
    let mut removed: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let line_end = next_line(message, pos);
        let line = &message[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            break; // the blank line: the body follows
        }
        // A field: this line and every continuation line (starting with WSP).
        let mut end = line_end;
        while end < message.len() && matches!(message[end], b' ' | b'\t') {
            end = next_line(message, end);
        }
        let field = &message[pos..end];
        if let Some(value) = authentication_results_value(field)
            && authserv_id_of(value).is_some_and(|id| {
                id.trim_end_matches('.')
                    .as_bytes()
                    .eq_ignore_ascii_case(ours.as_bytes())
            })
        {
            removed.push((pos, end));
        }
        pos = end;
    }
    if removed.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut from = 0;
    for (start, end) in removed {
        out.extend_from_slice(&message[from..start]);
        from = end;
    }
    out.extend_from_slice(&message[from..]);
    Cow::Owned(out)
}

/// The index just past the LF ending the line at `pos` (or the end).
fn next_line(message: &[u8], pos: usize) -> usize {
    message[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(message.len(), |i| pos + i + 1)
}

/// The value of an `Authentication-Results:` field (name matched
/// case-insensitively, white space before the colon allowed as RFC 5322
/// §4.5.3's obsolete syntax does), or `None` for any other field.
fn authentication_results_value(field: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"authentication-results";
    let colon = field.iter().position(|&b| b == b':')?;
    let name = field[..colon].trim_ascii_end();
    name.eq_ignore_ascii_case(NAME).then(|| &field[colon + 1..])
}

/// The authserv-id (RFC 8601 §2.2: the first `value`, a token or a
/// quoted-string, after optional CFWS) of an `Authentication-Results:`
/// value, with folding and comments skipped.
fn authserv_id_of(value: &[u8]) -> Option<String> {
    let mut i = skip_cfws(value, 0);
    if value.get(i) == Some(&b'"') {
        let mut out = Vec::new();
        i += 1;
        while let Some(&b) = value.get(i) {
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    out.extend(value.get(i + 1));
                    i += 2;
                }
                b'\r' | b'\n' => i += 1,
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        return None;
    }
    let start = i;
    while let Some(&b) = value.get(i) {
        if b == b';' || b == b'(' || b.is_ascii_whitespace() {
            break;
        }
        i += 1;
    }
    (i > start).then(|| String::from_utf8_lossy(&value[start..i]).into_owned())
}

/// The index of the first byte at or after `i` that is not folding white
/// space or part of a (possibly nested) comment (RFC 5322 §3.2.2).
fn skip_cfws(value: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = value.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"Authentication-Results: mx.example.test; spf=pass\r\n\
        \tsmtp.mailfrom=body@example.test\r\n.\r\nbody line\r\n";

    fn message(headers: &str) -> Vec<u8> {
        let mut m = headers.as_bytes().to_vec();
        m.extend_from_slice(b"\r\n");
        m.extend_from_slice(BODY);
        m
    }

    #[test]
    fn our_results_are_removed_folded_and_in_any_case() {
        let m = message(
            "Received: from a by b; Sun, 29 Nov 2026 10:00:00 +0000\r\n\
             Authentication-Results: mx.example.test; dkim=pass header.d=forged.example\r\n\
             From: a@example.org\r\n\
             authentication-results  :\r\n \t(forged) MX.Example.Test.;\r\n\tspf=pass\r\n\
             \x20  smtp.mailfrom=x@forged.example\r\n\
             Authentication-Results: \"mx.example.test\"; none\r\n\
             Subject: hi\r\n",
        );
        let out = strip_own_results(&m, "mx.example.test");
        let expected = message(
            "Received: from a by b; Sun, 29 Nov 2026 10:00:00 +0000\r\n\
             From: a@example.org\r\n\
             Subject: hi\r\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected)
        );
        // The body, with a line that looks like our header, is untouched.
        assert!(out.ends_with(BODY));
    }

    #[test]
    fn other_results_and_other_fields_are_kept_byte_for_byte() {
        let m = message(
            "Authentication-Results: mx.example.test.other; spf=pass\r\n\
             Authentication-Results: other.example; dkim=pass\r\n\
             \t header.d=example.org\r\n\
             ARC-Authentication-Results: i=1; mx.example.test; dmarc=pass\r\n\
             X-Authentication-Results: mx.example.test; none\r\n\
             Subject:  =?utf-8?q?caf=C3=A9?= \r\n",
        );
        let out = strip_own_results(&m, "mx.example.test");
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(&*out, &m[..]);
    }

    #[test]
    fn lf_only_messages_and_a_missing_body_work() {
        let m = b"From: a@example.org\nAuthentication-Results: mx.example.test;\n spf=fail\nSubject: s\n\nAuthentication-Results: mx.example.test; x\n";
        let out = strip_own_results(m, "mx.example.test");
        assert_eq!(
            &*out,
            b"From: a@example.org\nSubject: s\n\nAuthentication-Results: mx.example.test; x\n"
        );
        let headers_only = b"Authentication-Results: mx.example.test; none";
        assert_eq!(&*strip_own_results(headers_only, "mx.example.test"), b"");
    }
}
