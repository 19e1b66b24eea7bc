//! Multi-process cluster tests: the sandbox builder lands with the replicated storage issue.
