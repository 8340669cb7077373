"""Symmetric tensor decomposition by over-parametrized gradient flow, beside tensor power deflation."""

from .comparison import Comparison, ComparisonRecord, compare
from .targets.cumulants import SampleCumulants
from .estimators.symmetric import GradientFlowCP, PowerDeflationCP
from .solvers.symmetric_flow import VARIANTS, gradient_flow_cp
from .estimators.general import GradientFlowParafac
from .targets.general import ObservedEntries
from .solvers.general_flow import gradient_flow_parafac
from .solvers.general_power import power_deflation_parafac
from .estimators.latent import SingleTopicModel, SphericalGaussianMixture
from .estimators.moment_decomposition import MomentDecomposition
from .check.measures import components_recovered, match_components, relative_error
from .targets.symmetric import SampleMoments
from .plotting import plot_deflation, plot_discovery, plot_overview
from .solvers.power import PowerTrace, power_deflation_cp
from .synthetic import random_cp, random_symmetric_cp
from .flow.trace import FlowEvent, FlowTrace

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
