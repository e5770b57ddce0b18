//! Health: `procrun probe` (for Docker `HEALTHCHECK` and as a watching sidecar), the status
//! endpoint that `procrun start --status-addr` serves from the supervisor's board, and the
//! `procrun status` client.

pub(crate) mod endpoint;
pub(crate) mod probe;
pub(crate) mod status;
