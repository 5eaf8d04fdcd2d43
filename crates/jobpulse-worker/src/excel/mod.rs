//! The spreadsheet side of the AI/tool jobs, with no database and no network: parsing an uploaded
//! student sheet ([`import`]), the initial credentials of imported students ([`credentials`]),
//! the attendance workbook ([`export`]) and the shape of the import result ([`report`]).
//!
//! `testing` (feature `testing`) generates student workbooks together with the counts a correct
//! import must produce, for this crate's tests and for the enrolment tests of other crates.

pub mod credentials;
pub mod export;
pub mod import;
pub mod phone;
pub mod report;
#[cfg(feature = "testing")]
pub mod testing;

pub use phone::{Phone, PhoneError};
