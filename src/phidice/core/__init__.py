"""The leaf of phidice: Φ, the validated configuration, the types that flow between layers, and checks.

Nothing here imports another part of phidice.
"""
