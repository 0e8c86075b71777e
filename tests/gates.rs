//! Tests of gates (to be written).
