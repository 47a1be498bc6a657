"""Reads of the capacity app: inventory for operators, availability for the storefront."""
