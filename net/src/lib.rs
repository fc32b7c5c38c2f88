//! cairn-net
