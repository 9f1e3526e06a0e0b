//! What the admin commands print: `say!`, ages, and text that came from a
//! message (subjects, names, headers) with its control characters defused,
//! so a hostile mail cannot drive the admin's terminal.

/// `println!` that ignores a closed stdout (`boxtrap queue list | head`)
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// An age in its largest whole unit: `45s`, `5m`, `3h`, `2d` (a time
/// in the future, from another node's clock, is `0s`).
pub fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Text from a message on one line: control characters become spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// [`one_line`], cut to `max` characters with an ellipsis.
pub fn shorten(s: &str, max: usize) -> String {
    let s = one_line(s);
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if s.chars().count() > max => format!("{}…", &s[..cut]),
        _ => s,
    }
}

/// Message text for the terminal: CRLF becomes LF; other control
/// characters except tab become U+FFFD, so no escape sequence gets through.
pub fn printable(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .replace("\r\n", "\n")
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// A sender in angle brackets, `<>` for the null sender.
pub fn angle(sender: &str) -> String {
    if sender.is_empty() {
        "<>".into()
    } else {
        format!("<{}>", one_line(sender))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_cannot_reach_the_terminal_raw() {
        assert_eq!(one_line("a\r\nb\x1b[31mc"), "a  b [31mc");
        assert_eq!(
            printable(b"A: 1\r\nB:\t\x1b]0;x\x07\r\n"),
            "A: 1\nB:\t\u{fffd}]0;x\u{fffd}\n"
        );
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abcd", 4), "abcd");
        assert_eq!(angle(""), "<>");
        assert_eq!(angle("a\x1b@b"), "<a @b>");
    }

    #[test]
    fn ages_are_in_their_largest_whole_unit() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(300), "5m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(2 * 86400 + 5), "2d");
    }
}
