//! jobpulse-db (being written).
