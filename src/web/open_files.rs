//! The process's open-files limit (`RLIMIT_NOFILE`): raised at start to
//! the hard limit, and checked against the connection caps so that a flood
//! on one listener cannot use up the descriptors the other needs.

use crate::config::Config;

/// Descriptors kept for everything that is not a connection counted by a
/// cap: the listeners, the log files, Maildir and outbox files being
/// written, DNS and outbound SMTP sockets, stdio.
pub const RESERVED: u64 = 128;

/// Raises the soft open-files limit as far as the hard limit allows and
/// returns the limit now in force (a count of descriptors). Raising is
/// allowed for every process; only the hard limit itself needs privileges.
pub fn raise() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft open-files limit in force, `None` where it cannot be read.
pub fn current() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Descriptors the configured caps can hold at once: SMTP sessions, web
/// connections (and those being refused), database connections and
/// [`RESERVED`].
pub fn needed(config: &Config) -> u64 {
    (config.smtp.max_connections as u64)
        .saturating_add(config.web.max_connections as u64)
        .saturating_add(super::listener::MAX_REFUSING as u64)
        .saturating_add(u64::from(config.database.max_connections))
        .saturating_add(RESERVED)
}

/// A warning when the caps add up to more descriptors than `limit`: then a
/// flood of web connections can still starve SMTP (or the reverse).
pub fn warning(config: &Config, limit: u64) -> Option<String> {
    let need = needed(config);
    (need > limit).then(|| {
        format!(
            "open files limit {limit} is below what the connection caps can use ({need}: \
             smtp.max_connections {} + web.max_connections {} + {} being refused + \
             database.max_connections {} + {RESERVED} reserved): raise the hard limit \
             (systemd: LimitNOFILE=) or lower the caps, or a flood on one listener can \
             make the other unreachable",
            config.smtp.max_connections,
            config.web.max_connections,
            super::listener::MAX_REFUSING,
            config.database.max_connections,
        )
    })
}

/// Logs the limit in force ("open files limit: N") and warns when the caps
/// do not fit in it; `serve` calls this at start.
pub fn report(config: &Config) {
    match current() {
        Some(limit) => {
            tracing::info!("open files limit: {limit}");
            if let Some(w) = warning(config, limit) {
                tracing::warn!("{w}");
            }
        }
        None => tracing::warn!("open files limit: cannot be read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_in_1024_open_files() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert!(needed(&c) < 1024, "{}", needed(&c));
        assert_eq!(warning(&c, 1024), None);
    }

    #[test]
    fn caps_over_the_limit_are_named_in_the_warning() {
        let mut c = Config::load(None, Vec::new()).unwrap();
        c.web.max_connections = 2000;
        let w = warning(&c, 1024).expect("a warning");
        assert!(w.contains("open files limit 1024"), "{w}");
        assert!(w.contains("web.max_connections 2000"), "{w}");
        assert!(w.contains("smtp.max_connections"), "{w}");
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = current().unwrap();
        let after = raise().unwrap();
        assert!(after >= before, "{after} < {before}");
        assert_eq!(current(), Some(after));
    }
}
