"""Simulated external systems (payment service, warehouse), reached only over HTTP.

They stand in for third parties, so they import nothing from the Django project and keep
their state in their own SQLite files.
"""
