"""Stages 2-3 detectors behind one registry: method name -> detector class.

Adding a method is one module here (an estimator as described in base.py,
its parameters declared with params.param) and one line below; the CLI's
--method choices and parameter options, the config, the report's words,
SARIF's rule and summary.json read everything else from the class.
"""

from __future__ import annotations

from .base import (Context, Criterion, Detector, LaterTurns, MethodInfo, Reason, Turns, Verdict,
                   channels_of, decide)
from .bye import BSI_RULES, ByeDetector, ByeParams
from .combined import CombinedDetector, CombinedParams
from .minority import GroupEvidence, MinorityDetector, MinorityParams
from .response import ResponseDetector, ResponseParams

DETECTORS: dict[str, type[Detector]] = {
    "bye": ByeDetector,
    "minority": MinorityDetector,
    "response": ResponseDetector,
    "combined": CombinedDetector,
}

__all__ = ["BSI_RULES", "DETECTORS", "ByeDetector", "ByeParams", "CombinedDetector", "CombinedParams",
           "Context", "Criterion", "Detector", "GroupEvidence", "LaterTurns", "MethodInfo",
           "MinorityDetector", "MinorityParams", "Reason",
           "ResponseDetector", "ResponseParams", "Turns", "Verdict", "channels_of", "decide"]
