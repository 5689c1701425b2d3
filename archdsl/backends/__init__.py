"""Backends. Only this package imports torch."""
