"""The router: choose a model by cost and capability (``Router.rank``) and send the request (dispatch)."""

from router.candidate import Candidate
from router.classify import TaskClassifier
from router.constraints import Constraints, Requirements, requirements
from router.errors import NoCandidatesError, RankingError, RouterError, StateError, UnknownModel
from router.predictor import (
    GroupLogisticPredictor,
    KNNPredictor,
    LogisticPredictor,
    QualityPredictor,
    load_predictor,
    save_predictor,
)
from router.rank import Decision, Router
from router.rules import RoutingRule, load_rules
from router.scoring import POLICIES

__all__ = [
    "POLICIES",
    "Candidate",
    "Constraints",
    "Decision",
    "GroupLogisticPredictor",
    "KNNPredictor",
    "LogisticPredictor",
    "NoCandidatesError",
    "QualityPredictor",
    "RankingError",
    "Requirements",
    "Router",
    "RouterError",
    "RoutingRule",
    "StateError",
    "TaskClassifier",
    "UnknownModel",
    "load_predictor",
    "load_rules",
    "requirements",
    "save_predictor",
]
