//! Challenges: signed tokens ([`token`]), the owner-editable texts
//! ([`templates`]), the challenge mail itself ([`compose`]) and its DKIM
//! signature ([`sign`]).

pub mod compose;
pub mod issue;
pub mod notice;
pub mod sign;
pub mod templates;
pub mod token;
