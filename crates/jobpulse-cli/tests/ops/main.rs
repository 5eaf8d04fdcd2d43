//! Operations tests of the `jobpulse` binary: a server that never hangs on its logs, access
//! logs and request ids, metrics an operator can alert on, the deployment files, and the error
//! messages a new operator meets.

#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;

mod cli;
mod deploy;
mod errors;
mod logs;
mod observability;
mod procs;
mod tls;
mod watch;
