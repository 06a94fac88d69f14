"""Readers beside the study: status tables, plots, the offline HTML report and optuna-dashboard.

Names are imported on first use (lazy_loader), so that importing the package stays cheap; the
stub ``__init__.pyi`` beside this file lists them for readers and type checkers.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach_stub(__name__, __file__)
