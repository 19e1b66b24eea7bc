//! Fault scenarios, nemeses and the history checker land with the cluster issues.
