"""Soak tier: the adapter as a real process under bounded load, behind a failing backend (marker
``soak``). Uses the fleet and Prometheus fixtures of :mod:`tests.support.fixtures`.
"""
