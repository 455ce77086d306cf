"""Exception and warning classes: one place, so callers can catch our errors by type."""


class BayesHLMError(ValueError):
    """Base class for input errors raised by bayes_hlm (subclass of ``ValueError``)."""


class FormulaError(BayesHLMError):
    """The formula cannot be parsed or names something that does not exist."""


class DataError(BayesHLMError):
    """The data cannot be used for the requested model (types, missing values, sizes)."""


class BayesHLMWarning(UserWarning):
    """Something was changed or is doubtful, and the fit went on (dropped rows, aliased columns)."""


class ConvergenceWarning(BayesHLMWarning):
    """Sampler or optimiser diagnostics say the result may not be trustworthy."""
