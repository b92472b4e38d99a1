"""Reusable building blocks, free of kedro and mlflow (usable from a notebook or a GPU box).

Modules (import the one you need; none is imported here, so ``import podium.core`` is cheap):

- ``config``: ParameterError and check_choice / check_keys / check_range for parameters.
- ``params``: typed parameter blocks (pydantic) that Kedro validates before the first node,
  the shared ``runtime`` block, and errors that name the path, the choices and the file.
- ``seeding``: seed_everything, seeded DataLoader workers and generators, and the one
  seeding scheme: ``derive_seed`` / ``training_seed`` for any (model, fold, DDP rank).
- ``device``: device selection, AMP (bf16 / fp16 / fp32) settings, channels_last.
- ``checkpoints``: safetensors state dicts, resumable ``weights_only`` training checkpoints.
- ``models``: timm model factory with one or several classification heads.
- ``augment``: albumentations 2.x pipelines from parameter lists.
- ``optim``: timm optimizers and learning-rate schedules from one parameter shape.
- ``training``: the one training engine (``fit``: AMP, channels_last, gradient accumulation
  and clipping, EMA, a custom step, resume from every epoch), ``seeded_loader`` and
  ``predict``; the same loop in one process or in N DDP processes.
- ``resume``: checkpoint folders keyed on what shapes a training, ``resume_from`` and
  ``launch_resumable`` (a job's result kept, a killed job continued).
- ``ddp``: DDP through torch.distributed's elastic launcher (``launch``), the
  ``runtime.distributed`` settings, rank helpers and the distributed weighted sampler.
- ``splits``: group-aware (stratified) K-fold assignment.
- ``ensemble``: soft / hard voting and logit-scaling calibration.
- ``plots``: matplotlib Figures (confusion matrix, reliability, image grids, curves, bars).
- ``distributed``: Dask client context and fault-tolerant per-item ``map_items``.
- ``fid``: FID and Kaggle's MiFID on Inception-v3 pool features (or a named stand-in).
"""
