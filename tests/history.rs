//! Tests of history (to be written).
