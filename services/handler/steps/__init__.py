"""The built-in handler (data cleaning) steps; importing this package registers them all.

=============  ===============================================================
`drop_na`      drop rows with missing values
`fill_na`      fill missing values (fixed value, or learned mean/median/mode)
`filter`       keep the rows where an expression is true
`dedupe`       drop duplicate rows
`sort`         sort the rows
`clip`         limit numeric columns to fixed or learned (quantile) bounds
`rename`       rename columns
`select`       keep exactly the given columns, in order
`drop_columns` drop columns
`cast`         convert column types
`nameko`       call a method of an existing nameko service with each batch
=============  ===============================================================
"""

from .base import HandlerStep
from .cast import Cast
from .columns import DropColumns, Rename, Select
from .missing import DropNa, FillNa
from .outliers import Clip
from .remote import NamekoCall
from .rows import Dedupe, Filter, Sort

__all__ = [
    "Cast",
    "Clip",
    "Dedupe",
    "DropColumns",
    "DropNa",
    "FillNa",
    "Filter",
    "HandlerStep",
    "NamekoCall",
    "Rename",
    "Select",
    "Sort",
]
