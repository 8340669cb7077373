"""Symmetric tensor decomposition by over-parametrized gradient flow, beside tensor power deflation."""

from .comparison import Comparison, ComparisonRecord, compare
from .cumulants import SampleCumulants
from .estimators import GradientFlowCP, PowerDeflationCP
from .flow import VARIANTS, gradient_flow_cp
from .general import (
    GradientFlowParafac,
    ObservedEntries,
    gradient_flow_parafac,
    power_deflation_parafac,
)
from .latent import SingleTopicModel, SphericalGaussianMixture
from .moment_decomposition import MomentDecomposition
from .measures import components_recovered, match_components, relative_error
from .operators import SampleMoments
from .plotting import plot_deflation, plot_discovery, plot_overview
from .power_method import PowerTrace, power_deflation_cp
from .synthetic import random_cp, random_symmetric_cp
from .trace import FlowEvent, FlowTrace

__version__ = "0.1.0"

__all__ = [
    "gradient_flow_cp",
    "power_deflation_cp",
    "gradient_flow_parafac",
    "power_deflation_parafac",
    "GradientFlowParafac",
    "ObservedEntries",
    "SampleMoments",
    "SampleCumulants",
    "GradientFlowCP",
    "PowerDeflationCP",
    "MomentDecomposition",
    "SingleTopicModel",
    "SphericalGaussianMixture",
    "random_symmetric_cp",
    "random_cp",
    "relative_error",
    "components_recovered",
    "match_components",
    "FlowTrace",
    "FlowEvent",
    "PowerTrace",
    "VARIANTS",
    "compare",
    "Comparison",
    "ComparisonRecord",
    "plot_deflation",
    "plot_discovery",
    "plot_overview",
]
