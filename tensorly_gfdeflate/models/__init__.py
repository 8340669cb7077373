"""Models: the over-parametrized symmetric and general CP models, behind one protocol.

A model turns a matrix of slots ``W`` into its loss, gradient and components,
on any target (:mod:`tensorly_gfdeflate.targets`); it knows nothing of how the
flow is run or checked.
"""
