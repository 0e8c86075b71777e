//! Tests of notify (to be written).
