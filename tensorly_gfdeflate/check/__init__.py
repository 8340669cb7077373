"""The check: read-out of a fitted model, the residual probe with its noise floors, and the measures.

Both solvers judge their result here before they report success.
"""
