"""Latent variable models by the method of moments: topic models and Gaussian mixtures.

The building blocks (moment operators, whitening, un-whitening) are in
:mod:`tensorly_gfdeflate.estimators.latent.whitening`, public so that other models can be
assembled from them.
"""

from .mixtures import SphericalGaussianMixture
from .topics import SingleTopicModel

__all__ = ["SingleTopicModel", "SphericalGaussianMixture"]
