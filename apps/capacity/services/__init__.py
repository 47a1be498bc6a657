"""Writes of the capacity app, one module per concern: nodes (registration, reports, state),
allocations (the allocator) and quotas."""
