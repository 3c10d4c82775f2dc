"""Method registry: a config's `method:` names one of these."""
import difflib

from .base import Method
from .magnitude import GMP, FilterPrune, MagnitudeFinetune
from .rda_methods import ProxSGD, RDAL1, SGDL1, XRDAMethod
from .rigl import RigL
from .sgd import SGD
from .soft_threshold import SoftThreshold
from .str_method import STR
from .xrda import XRDA

METHODS = {cls.name: cls for cls in (
    SGD,
    XRDAMethod,
    RDAL1,
    ProxSGD,
    SGDL1,
    SoftThreshold,
    GMP,
    MagnitudeFinetune,
    FilterPrune,
    RigL,
    STR,
)}


def get_method(name):
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown method '{name}'; known: {', '.join(sorted(METHODS))}{hint}")
    return METHODS[name]
