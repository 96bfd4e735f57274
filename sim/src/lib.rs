//! See tests/simulation.rs.
