//! Tests: byte-exact vectors (bodies and frames), malformed input, random
//! round trips and a deterministic fuzz run.
//!
//! The vectors were computed by hand from Seata's Java codecs
//! (`serializer/seata-serializer-seata/src/main/java/.../protocol/**`, tags
//! v1.2.0 and v1.8.0), mostly for the field values of Seata's own unit tests
//! (`serializer/seata-serializer-seata/src/test/java/.../protocol/**`); each
//! vector names the test it mirrors. Those tests only round-trip through the
//! Java codec, so the bytes here are what that codec writes for their
//! values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod frames;
mod fuzz;
mod roundtrip;
mod util;
mod vectors;
