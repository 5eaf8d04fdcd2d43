//! One module per subcommand.

pub mod admin;
pub mod serve;
pub mod storage;
pub mod submit;
pub mod token;
pub mod up;
pub mod watch;
pub mod webhook;
pub mod worker;
