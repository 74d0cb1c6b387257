"""Integrations of phidice into training frameworks (optional extras).

``phidice.integrations.nnunet``: nnU-Net v2 trainers (``pip install phidice[nnunet]``).
"""
