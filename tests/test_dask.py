"""Moments of Dask arrays: the same results as in memory, one pass, X never computed whole."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tensorly_gfdeflate import SampleMoments, gradient_flow_cp

da = pytest.importorskip("dask.array")


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    sources = rng.gamma(2.0, size=(30000, 5)) - 2.0
    return sources @ rng.standard_normal((5, 5)).T


@pytest.mark.parametrize("order", [2, 3, 4])
def test_dask_moments_equal_the_in_memory_ones(data, order):
    in_memory = SampleMoments(data, order)
    chunked = SampleMoments(da.from_array(data, chunks=(7000, 5)), order)
    assert chunked.n_samples == 30000 and not chunked.norm_is_estimate
    np.testing.assert_allclose(chunked.to_dense(), in_memory.to_dense(), rtol=1e-10,
                               atol=1e-12 * np.abs(in_memory.to_dense()).max())
    assert chunked.norm == pytest.approx(in_memory.norm, rel=1e-12)
    V = np.linalg.qr(np.random.RandomState(1).standard_normal((5, 3)))[0]
    np.testing.assert_allclose(chunked.contract(V), in_memory.contract(V), rtol=1e-9)
    # Standard errors come from one chunk of rows: an estimate of the full-data ones.
    np.testing.assert_allclose(chunked.standard_error(V), in_memory.standard_error(V),
                               rtol=0.15)


def test_dask_fit_equals_the_in_memory_fit(data):
    chunked = da.from_array(data, chunks=(7000, 5))
    # Explicit regularization: the automatic one reads standard errors, estimated
    # from one chunk for Dask, so it differs slightly from the in-memory one.
    expected = gradient_flow_cp(SampleMoments(data, 3), regularization=0.05, random_state=0)
    result = gradient_flow_cp(SampleMoments(chunked, 3), regularization=0.05, random_state=0)
    np.testing.assert_allclose(result.weights, expected.weights, rtol=1e-8)


def test_the_pass_runs_on_a_local_cluster_of_two_processes(data):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            chunked = da.from_array(data, chunks=(7000, 5))
            moments = SampleMoments(chunked, 3)
            # The reduction ran on the workers: each worker holds no result, but
            # both took part in the chunk tasks.
            workers = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(workers) == 2 and all(count > 0 for count in workers.values())
    np.testing.assert_allclose(moments.to_dense(), SampleMoments(data, 3).to_dense(),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_a_lazily_generated_array_larger_than_memory_used_is_never_materialized():
    # 2e7 x 4 float64 is 640 MB; the pass must stay far below that (peak RSS of a
    # fresh interpreter, which has numpy, dask and the package loaded: about 150 MB).
    code = textwrap.dedent("""
        import dask, dask.array as da
        from tensorly_gfdeflate import SampleMoments
        X = da.random.RandomState(0).standard_normal((20_000_000, 4), chunks=(1_000_000, 4))
        with dask.config.set(scheduler="threads", num_workers=2):
            moments = SampleMoments(X, 3)
        assert moments.n_samples == 20_000_000
        peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        print(int(peak.split()[1]) * 1024)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    peak_bytes = int(result.stdout.split()[-1])
    assert peak_bytes < 0.5 * 20_000_000 * 4 * 8


@pytest.mark.parametrize("make, match", [
    (lambda X: X.rechunk((7000, 2)), r"chunked along its columns .* rechunk"),
    (lambda X: X[X[:, 0] > 0], r"unknown chunk sizes.*compute_chunk_sizes"),
    (lambda X: X.astype(int), r"dtype int64"),
    (lambda X: da.where(da.arange(X.shape[0])[:, None] == 12345, np.nan, X),
     r"NaN or inf in 1 chunk\(s\), the first holding rows 7000 to 13999"),
    (lambda X: X[:, :4].rechunk((7000, 4)).T.rechunk((4, -1))[:, :, None],
     r"2-D"),
])
def test_bad_dask_inputs_name_the_fix(data, make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SampleMoments(make(da.from_array(data, chunks=(7000, 5))), 3)


def test_too_many_columns_for_one_pass_is_a_clear_error():
    wide = da.zeros((100, 300), chunks=(50, 300))
    with pytest.raises(ValueError, match="Reduce the dimension first"):
        SampleMoments(wide, 3)


def test_the_core_package_does_not_import_dask():
    code = ("import sys, numpy as np; import tensorly_gfdeflate as g; "
            "g.gradient_flow_cp(g.SampleMoments(np.random.RandomState(0).rand(500, 3), 3), "
            "rank=1, random_state=0); print('dask' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("order", [3, 4])
def test_dask_cumulants_equal_the_in_memory_ones(data, order):
    from tensorly_gfdeflate import SampleCumulants

    shifted = data + 3.0  # the cumulants must not see the mean
    in_memory = SampleCumulants(shifted, order)
    chunked = SampleCumulants(da.from_array(shifted, chunks=(7000, 5)), order)
    np.testing.assert_allclose(chunked.to_dense(), in_memory.to_dense(),
                               atol=1e-10 * np.abs(in_memory.to_dense()).max())
    assert chunked.norm == pytest.approx(in_memory.norm, rel=1e-10)


@pytest.mark.parametrize("solver, whiten", [("gradient_flow", True), ("power_deflation", True),
                                            ("power_deflation", False)])
def test_moment_decomposition_of_a_dask_array_equals_the_in_memory_fit(data, solver, whiten):
    from tensorly_gfdeflate import MomentDecomposition

    chunked = da.from_array(data, chunks=(7000, 5))
    expected = MomentDecomposition(solver=solver, whiten=whiten, random_state=0).fit(data)
    model = MomentDecomposition(solver=solver, whiten=whiten, random_state=0).fit(chunked)
    np.testing.assert_allclose(model.components_, expected.components_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.weights_, expected.weights_, rtol=1e-6)
    # transform stays lazy for Dask input, and accepts in-memory data as well.
    sources = model.transform(chunked)
    assert isinstance(sources, da.Array)
    np.testing.assert_allclose(sources.compute(), model.transform(data), rtol=1e-10)
    with pytest.raises(ValueError, match="fitted on 5 features"):
        model.transform(chunked[:, :4])
