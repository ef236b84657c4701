"""Repair: grant or revoke a device on a running target, on every layer (issue 8).

``plan`` is pure (an ``Inspection`` and a request in, typed actions out), ``apply`` is the one
module that changes the system (each action with its undo, verified, rolled back on failure).
"""
