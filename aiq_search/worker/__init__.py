"""A worker: the loop that takes a study's trials one by one, the objective each trial runs, the quota that
stops at n_trials complete, Ctrl-C handling and the console display.

Names are imported on first use (lazy_loader), so that importing the package stays cheap; the
stub ``__init__.pyi`` beside this file lists them for readers and type checkers.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach_stub(__name__, __file__)
