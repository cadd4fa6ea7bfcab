"""The handlers without a page: they take dicts keyed by component, so any hashable, named object
can stand in for one (the app's bench and the tests run the handlers this way)."""

from dataclasses import fields


class Stub:
    """A stand-in component: hashable, named."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def stubbed(cls, prefix: str = "", **given):
    """An instance of the dataclass ``cls``: the ``given`` fields as given, every other a ``Stub``."""
    return cls(**{f.name: given[f.name] if f.name in given else Stub(prefix + f.name) for f in fields(cls)})


def stub_ui(service, examples):
    """The handlers' ``UI`` on ``service``, every component a ``Stub``."""
    from .presenting import UI
    from .settings import Controls

    return stubbed(UI, service=service, examples=examples, controls=stubbed(Controls))


def stub_views(reference):
    """The views' ``Views`` with ``reference``, every component a ``Stub``."""
    from .tabs import BatchTab, CompareTab
    from .views_handlers import Views

    return stubbed(
        Views, reference=reference, compare=stubbed(CompareTab, "compare."), batch=stubbed(BatchTab, "batch.")
    )
