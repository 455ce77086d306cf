"""Exception and warning classes: one place, so callers can catch our errors by type."""


class BayesHLMError(ValueError):
    """Base class for input errors raised by bayes_hlm (subclass of ``ValueError``)."""


class FormulaError(BayesHLMError):
    """The formula cannot be parsed or names something that does not exist."""


class DataError(BayesHLMError):
    """The data cannot be used for the requested model (types, missing values, sizes)."""


class ColumnNotFoundError(KeyError):
    """A column named in a call is not in the data frame (a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


class ScalingError(NotImplementedError):
    """A prior cannot be transformed to the scaled problem (unknown family)."""


class OutOfCoreError(BayesHLMError, NotImplementedError):
    """The request needs the rows again (or a layout the out-of-core engine does not handle)."""


class BayesHLMWarning(UserWarning):
    """Something was changed or is doubtful, and the fit went on (dropped rows, aliased columns)."""


class ConvergenceWarning(BayesHLMWarning):
    """Sampler or optimiser diagnostics say the result may not be trustworthy."""


class SeparationWarning(BayesHLMWarning):
    """A binary/binomial outcome is perfectly predicted by fixed effects (checked before sampling)."""


class OverdispersionWarning(BayesHLMWarning):
    """The data vary more than the family allows (Pearson chi2/df of a Poisson fit)."""
