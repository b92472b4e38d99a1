"""Reusable building blocks, free of kedro and mlflow (usable from a notebook or a GPU box).

Modules (import the one you need; none is imported here, so ``import podium.core`` is cheap):

- ``config``: ParameterError and check_choice / check_keys / check_range for parameters.
- ``seeding``: seed_everything, seeded DataLoader workers and generators.
- ``device``: device selection, AMP (bf16 / fp16 / fp32) settings, channels_last.
- ``checkpoints``: safetensors state dicts, resumable ``weights_only`` training checkpoints.
- ``models``: timm model factory with one or several classification heads.
- ``augment``: albumentations 2.x pipelines from parameter lists.
- ``training``: a resumable training loop (``fit``) and ``predict``.
- ``splits``: group-aware (stratified) K-fold assignment.
- ``ensemble``: soft / hard voting and logit-scaling calibration.
- ``plots``: matplotlib Figures (confusion matrix, reliability, image grids, curves, bars).
- ``distributed``: Dask client context and fault-tolerant per-item ``map_items``.
- ``fid``: FID and Kaggle's MiFID on Inception-v3 pool features (or a named stand-in).
"""
