"""Marginalised NUTS backend (placeholder until the math core lands)."""

from ..spec.design import Design


def supports_marginal(design: Design) -> bool:
    return False
