"""Use a trial's model: ``bench predict`` over new images and ``bench register`` as an MLflow model.

``model``: a trial's fold models from the run store or a saved folder (``TrialModel``); ``run``: the
prediction loop over a folder (``predict``); ``register``: the MLflow pyfunc model and its registry version;
``pyfunc``: what the logged MLflow model runs when loaded.
"""

from bench.predict.model import TrialModel, best_trial, from_store
from bench.predict.run import PredictSummary, predict, predictor_for

__all__ = ["PredictSummary", "TrialModel", "best_trial", "from_store", "predict", "predictor_for"]
