//! Tests of adapters (to be written).
