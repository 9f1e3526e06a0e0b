//! A transport that keeps what it is given, for tests (lettre's stub
//! transport): the test reads [`Recording::sent`] instead of running a
//! second mail server.

use super::SendError;
use lettre::address::Envelope;
use std::sync::{Arc, Mutex};

/// One message handed to the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// `""` for the null sender `<>`.
    pub env_from: String,
    pub rcpt: String,
    /// The whole message, CRLF line endings.
    pub data: Vec<u8>,
}

/// Shared between the server's transport and the test holding a clone.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Everything sent so far, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        match self.sent.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(super) fn send(&self, envelope: &Envelope, data: &[u8]) -> Result<String, SendError> {
        let sent = Sent {
            env_from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
            rcpt: envelope
                .to()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
            data: data.to_vec(),
        };
        let mut all = self
            .sent
            .lock()
            .map_err(|_| SendError::Temporary("recording transport poisoned".into()))?;
        all.push(sent);
        Ok(format!("recorded as message {}", all.len()))
    }
}
