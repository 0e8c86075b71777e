//! Tests of status (to be written).
