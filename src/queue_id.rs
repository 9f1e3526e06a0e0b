//! Queue ids: the short name every accepted message carries in the 250
//! reply, the `Received:` header and every log line about it.
//!
//! The shape follows Exim's (`1wH3kL-0004dR-2k`): six base-62 digits of the
//! arrival second, six random base-62 digits, two of a per-process counter.
//! They sort by arrival time and stay unique across several `boxtrap serve`
//! nodes sharing one database.

use crate::clock::Timestamp;
use rand::RngExt;
use std::sync::atomic::{AtomicU32, Ordering};

const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn base62(mut n: u64, width: usize, out: &mut String) {
    let mut buf = vec![b'0'; width];
    for slot in buf.iter_mut().rev() {
        *slot = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// A new queue id for a message arriving at `now`.
pub fn new_queue_id(now: Timestamp) -> String {
    let mut id = String::with_capacity(16);
    base62(now.secs().max(0) as u64, 6, &mut id);
    id.push('-');
    base62(rand::rng().random_range(0..62u64.pow(6)), 6, &mut id);
    id.push('-');
    base62(
        u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)) % (62 * 62),
        2,
        &mut id,
    );
    id
}

/// Whether `s` has the shape of a queue id (for CLI arguments).
pub fn is_queue_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[6] == b'-'
        && b[13] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 6 || i == 13 || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_exim_shape_and_are_unique() {
        let now = Timestamp::from_secs(1_795_788_353);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = new_queue_id(now);
            assert!(is_queue_id(&id), "{id}");
            assert!(seen.insert(id));
        }
        assert!(!is_queue_id("not-an-id"));
        let earlier = new_queue_id(Timestamp::from_secs(1_795_788_352));
        assert!(earlier[..6] < new_queue_id(now)[..6]);
    }
}
