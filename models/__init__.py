"""Model registry: name -> constructor(num_classes, width, in_channels). Add a model = one file
+ one line.

A model's `input_shape` is the (C, H, W) of one input image it is built for: the data set's
(data.get(name).input_shape, passed by the caller), else the model's own (resnet50 and
mobilenet_v1 declare ImageNet's). Shape probes (metrics FLOPs, optim.base.probe, export) use
it; a CIFAR-style model built without one has none, and a probe says so (no guessed shape). resnet50_str and mobilenet_v1_str are
the same networks initialized as STR / LATS (paper B's code) do, with a bias-free classifier.
"""
import difflib

from .densenet import densenet40, densenet_bc100
from .mobilenet import mobilenet_v1, mobilenet_v1_str
from .resnet import resnet18, resnet20, resnet32, resnet44, resnet56, resnet110
from .resnet50 import resnet50, resnet50_str
from .vgg import vgg11, vgg13, vgg16, vgg19

_REGISTRY = {
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "resnet18": resnet18,
    "densenet40": densenet40,
    "densenet_bc100": densenet_bc100,
    "resnet50": resnet50,
    "mobilenet_v1": mobilenet_v1,
    "resnet50_str": resnet50_str,
    "mobilenet_v1_str": mobilenet_v1_str,
}

def names():
    return sorted(_REGISTRY)


def get_model(name, num_classes=10, width=1.0, input_shape=None):
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown model '{name}'; known: {', '.join(names())}" + hint)
    if not width > 0:  # also rejects NaN
        raise ValueError(f"model width must be > 0, got {width}")
    if input_shape is None:      # the constructor's own channels (and the model's own shape, if any)
        return _REGISTRY[name](num_classes=num_classes, width=width)
    model = _REGISTRY[name](num_classes=num_classes, width=width, in_channels=int(input_shape[0]))
    model.input_shape = tuple(input_shape)
    return model


def from_saved(saved):
    """The model a saved file describes (keys model, num_classes, width and dataset, whose
    registry entry gives the input shape), randomly initialized. A data set not in the
    registry: data.DataError, one line."""
    from sparsecs import data

    spec = data.get(saved["dataset"])
    return get_model(saved["model"], num_classes=saved["num_classes"], width=saved["width"],
                     input_shape=spec.input_shape)
