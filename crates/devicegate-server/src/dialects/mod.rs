//! Dialects of hosted identity services that users migrate from or test against. Each is a
//! thin adapter over the same core, device grants and verification flow: it translates paths,
//! field names, media types, error shapes and status objects, and holds no flow logic.

pub mod idcs;
pub mod ocient;
pub mod pingone;
