"""Estimators: the solvers and the method-of-moments models in scikit-learn's protocol."""
