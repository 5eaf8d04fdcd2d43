//! One module per subcommand.

pub mod serve;
pub mod submit;
pub mod token;
pub mod watch;
