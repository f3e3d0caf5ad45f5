"""Reconcilers and the pure planner they consult."""
