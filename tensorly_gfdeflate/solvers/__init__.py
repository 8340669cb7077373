"""Solvers: the gradient-flow functions (symmetric and general CP) and the power method."""
