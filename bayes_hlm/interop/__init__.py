"""Bridges to other modelling libraries (:mod:`.bambi`: fit a ``bambi.Model``, export to Bambi)."""
