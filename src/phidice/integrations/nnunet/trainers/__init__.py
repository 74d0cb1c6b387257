"""Trainer modules for nnU-Net's ``nnUNet_extTrainer`` search (``phidice nnunet trainers-path`` prints this folder).

nnU-Net ≥ 2.8 puts each folder listed in ``nnUNet_extTrainer`` on ``sys.path`` and imports its modules by name;
each module here re-exports one trainer class of :mod:`phidice.integrations.nnunet.training`.
"""
