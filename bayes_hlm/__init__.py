"""bayes_hlm: Bayesian hierarchical linear models."""
