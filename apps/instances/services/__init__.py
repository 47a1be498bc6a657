"""Writes of the instances app: the lifecycle (one transition function), launches and user
actions, what node agents report, and the reconciler that repairs anything left half-way."""
