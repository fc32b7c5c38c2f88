//! Cross-crate test helpers for cairn.
