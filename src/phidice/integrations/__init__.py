"""Integrations of phidice into training frameworks (optional extras).

``phidice.integrations.monai``: partial labels through MONAI transforms and engines (``pip install phidice[monai]``).
``phidice.integrations.nnunet``: nnU-Net v2 trainers (``pip install phidice[nnunet]``).
``phidice.integrations.lightning``: the GradientMonitor callback (``pip install phidice[lightning]``).
"""
