//! Typed HTTP client of the broker API (filled in by the CLI work).
