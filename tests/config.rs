//! Tests of config (to be written).
