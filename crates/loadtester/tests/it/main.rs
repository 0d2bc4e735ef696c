//! Real HTTP against the loadtester router and a counting target server, both on 127.0.0.1:0.

mod auth;
mod gates;
mod load;
mod support;
mod tasks;
