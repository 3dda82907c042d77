"""Manufacturer adapters: one protocol, a registry, and one folder per manufacturer.

Shared safeguards live beside them: the circuit breaker per manufacturer and the rate budgets per
manufacturer account, both kept in the document store so that every function instance agrees.
"""
