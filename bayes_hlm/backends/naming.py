"""Moved to :mod:`bayes_hlm.spec.variable_names` (posterior variable names and dims).

Kept so ``from bayes_hlm.backends import naming`` keeps working.
"""

from ..spec.variable_names import *  # noqa: F401,F403
from ..spec.variable_names import __all__  # noqa: F401
