"""A study in its SQL store: opening storages (with outage retries), creating or loading a study from a
study file, its sampler and pruner, artifact stores, and the records a trial writes and readers read.

Names are imported on first use (lazy_loader), so that importing the package stays cheap; the
stub ``__init__.pyi`` beside this file lists them for readers and type checkers.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach_stub(__name__, __file__)
