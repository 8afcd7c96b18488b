"""Which types a skops artefact may contain: an exact list, never a module prefix.

skops builds only the types its caller trusts, but a type it builds may be *called*
with arguments from the file (a reduce node), so trusting ``builtins.`` or
``sklearn.`` wholesale lets a rewritten artefact call ``builtins.exec`` or
``sklearn.utils._testing.assert_run_python_script_without_output``. Trust is therefore
by exact name:

- what skops trusts itself (scikit-learn's estimators, plain containers, NumPy arrays);
- :data:`TRUSTED_TYPES`: the internal types that the estimators the train service
  builds carry in their fitted state (a forest's trees, a boosting model's loss, a
  KNN's search tree) and the default callables they hold (a selector's score
  function), each harmless when constructed or called with any arguments;
- the types the trainer recorded in the card of a version it published, once the
  card's signature is verified (:mod:`mlrm.signing`), so a signed registry serves any
  estimator it trained;
- what the user lists under ``trusted_types``.
"""

from __future__ import annotations

from collections.abc import Iterable

TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        # trees, forests, boosting
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn._loss.loss.HalfTweedieLossIdentity",
        # neighbours
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        # Gaussian processes
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.gaussian_process.kernels.Matern",
        "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
        # calibration, clustering, neural networks
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.cluster._bisect_k_means._BisectingTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        # splines
        "scipy.interpolate._bsplines.BSpline",
        "scipy.sparse._csr.csr_matrix",
        "numpy.dtype",
        # default callables of estimators (score and pooling functions): pure computations
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.cluster._kmeans._kmeans_single_lloyd",
        "sklearn.cluster._kmeans._kmeans_single_elkan",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
        "numpy.mean",
    }
)


def refused_types(untrusted: Iterable[str], *allowed: Iterable[str]) -> list[str]:
    """The types in ``untrusted`` that neither :data:`TRUSTED_TYPES` nor any ``allowed`` list names exactly."""
    ok = set(TRUSTED_TYPES).union(*map(set, allowed))
    return sorted(t for t in set(untrusted) if t not in ok)
