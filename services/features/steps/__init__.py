"""Built-in features steps; importing this package registers them all.

- scaling: `standard_scale`, `minmax_scale` (learn statistics at training time)
- encoding: `one_hot`, `ordinal_encode` (learn categories at training time)
- time: `time_features` (stateless, row-local)
- windows: `lag`, `rolling` (need the whole, ordered stream)
- sequences: `sliding_window` (windows and future targets for sequence models; regroups rows)
- columns: `select`
"""

from .base import FeatureStep
from .columns import Select
from .encoding import OneHot, OrdinalEncode
from .scaling import MinmaxScale, StandardScale
from .sequences import SlidingWindow
from .time import TimeFeatures
from .windows import Lag, Rolling

__all__ = [
    "FeatureStep",
    "Lag",
    "MinmaxScale",
    "OneHot",
    "OrdinalEncode",
    "Rolling",
    "Select",
    "SlidingWindow",
    "StandardScale",
    "TimeFeatures",
]
