//! Challenges: signed tokens ([`token`]), the owner-editable texts
//! ([`templates`]) and the challenge mail itself ([`compose`]).

pub mod compose;
pub mod issue;
pub mod notice;
pub mod templates;
pub mod token;
