"""Controlled ablations and reproductions of podium runs.

``grid`` reads and checks an ablation grid file, ``plan`` turns it into runs and decides
which are already done, ``summary`` computes the statistics, table and plot. These three
import neither kedro nor mlflow, so a notebook can use them on runs it loaded itself.
``tracking`` queries and writes MLflow (no kedro); ``project``, ``ablate`` and
``reproduce`` drive Kedro and back the ``kedro ablate`` and ``kedro reproduce`` commands.
"""
