//! weather-core's tests through real sockets, in one binary: the listener's
//! bounds ([`listen`]), HTTP/1.1 as the services speak it ([`http`]), what
//! hostile clients get ([`hostile`]), and the outbound client ([`client`]).

mod client;
mod common;
mod hostile;
mod http;
mod listen;
