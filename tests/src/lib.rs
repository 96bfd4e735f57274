//! Cluster tests (dev-only).
