//! jobpulse-media (being written).
