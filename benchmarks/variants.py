"""The variants table of docs/theory.rst (section 'Variants of the flow'): components recovered by each variant, 4 seeds per configuration.

Orthogonal order-4 targets, weights geometric from 1 to 0.1; a component counts as
recovered at |<u, v>| >= 0.99 and weight within 5%. Usage: python benchmarks/variants.py
(about 80 s on one core; the paper variant often runs to its horizon).
"""

import time
import warnings

import tensorly as tl
from sklearn.exceptions import ConvergenceWarning

from tensorly_gfdeflate import VARIANTS, components_recovered, gradient_flow_cp, random_symmetric_cp

CONFIGURATIONS = [(20, 10, 10), (20, 10, 20), (30, 6, 8)]
SEEDS = range(4)


def main():
    print(f"{'d, r, width':>12} " + " ".join(f"{v:>14}" for v in VARIANTS) + "   seconds")
    for dim, rank, width in CONFIGURATIONS:
        start, cells = time.perf_counter(), []
        for variant in VARIANTS:
            counts = []
            for seed in SEEDS:
                truth = random_symmetric_cp(dim, rank, 4, random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    cp = gradient_flow_cp(tl.cp_to_tensor(truth), width=width,
                                          variant=variant, random_state=seed)
                counts.append(components_recovered(truth, cp))
            cells.append(",".join(map(str, counts)))
        label = f"{dim}, {rank}, {width}"
        print(f"{label:>12} " + " ".join(f"{c:>14}" for c in cells)
              + f"   {time.perf_counter() - start:7.1f}")


if __name__ == "__main__":
    main()
