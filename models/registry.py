"""The single model registry: argparse `choices`, tests and checkpoint loading read it."""
from helper.core.errors import UserError

model_dict = {}


def register_model(name=None):
    """Decorator: register a constructor `fn(num_classes=100) -> ImageClassifier` under `name`."""
    def wrap(fn):
        key = name or fn.__name__
        if key in model_dict:
            raise ValueError(f"model {key!r} registered twice")
        model_dict[key] = fn
        return fn
    return wrap


def available_models():
    return sorted(model_dict)


def create_model(name, num_classes=100):
    """Build a registered model; an unknown name is a `UserError` listing the choices."""
    if name not in model_dict:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(available_models())}.")
    return model_dict[name](num_classes=num_classes)
