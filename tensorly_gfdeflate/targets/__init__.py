"""Targets: every form of the tensor to decompose, seen only through contractions.

The lowest layer of the package. Symmetric targets (a dense array, a symmetric
CP tensor, sample moments and cumulants, Dask moment sums) and general ones (a
dense array, a masked array, observed entries, a CP tensor) all follow the
:class:`~tensorly_gfdeflate.targets.protocol.Target` protocol; nothing here
knows the model that is fitted to them.
"""
