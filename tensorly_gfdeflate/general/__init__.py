"""General (non-symmetric) CP decomposition and tensor completion (SPEC section 7).

- :mod:`.operators`: the target forms (dense array, dense array with a mask,
  observed entries as coordinates, CP tensor) seen through contractions;
- :mod:`.model`: the general CP model's gradient and components' geometry,
  for the shared engine (:mod:`tensorly_gfdeflate.engine`);
- :mod:`.flow`: :func:`gradient_flow_parafac`;
- :mod:`.power`: :func:`power_deflation_parafac`, the baseline;
- :mod:`.estimator`: :class:`GradientFlowParafac`.
"""

from .estimator import GradientFlowParafac
from .flow import gradient_flow_parafac
from .operators import ObservedEntries, as_general_operator
from .power import power_deflation_parafac

__all__ = ["gradient_flow_parafac", "power_deflation_parafac", "GradientFlowParafac",
           "ObservedEntries", "as_general_operator"]
