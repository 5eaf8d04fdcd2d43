//! jobpulse-worker (being written).
