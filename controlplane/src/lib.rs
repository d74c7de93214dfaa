//! Bulkhead control plane: policy-as-code, compiler, CLI and operator surfaces
