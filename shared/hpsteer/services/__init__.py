"""Use cases: plain functions that take a message or request and the ports they need."""
