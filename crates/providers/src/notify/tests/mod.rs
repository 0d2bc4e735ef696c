//! Notifiers against a real HTTP receiver: an axum server on 127.0.0.1:0 that records every
//! request and answers from a script.

mod delivery;
mod payloads;
mod receiver;
