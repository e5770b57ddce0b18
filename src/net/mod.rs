//! Networking shared by the health checks: `HOST:PORT` addresses, a small HTTP/1.1 module (the
//! client used by probes and `procrun status`, the request parsing and answers of the status
//! endpoint) and the one-attempt checks (`tcp`, `http`, `unix`) that `probe` and readiness run.

pub(crate) mod addr;
pub(crate) mod check;
pub(crate) mod http;
