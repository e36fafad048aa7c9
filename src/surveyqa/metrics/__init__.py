"""Metric definitions, specifications, units and the compute -> select -> aggregate engine.

This package is the pure core: it imports no Butler, database, web or GUI code.
"""
