"""General (non-symmetric) CP decomposition and tensor completion (SPEC section 7)."""
