//! jobpulse-api (being written).
