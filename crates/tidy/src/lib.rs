//! Repository checks that run as tests (`crates/tidy/tests/`): the **Architecture Invariant**
//! lines of `ARCHITECTURE.md` that a machine can check, and documentation rules. This library
//! itself is empty.
