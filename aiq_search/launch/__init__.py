"""Starting many workers on one study: local processes (`launch`) or a Ray cluster (`launch_on_ray`).

Names are imported on first use (lazy_loader), so that importing the package stays cheap; the
stub ``__init__.pyi`` beside this file lists them for readers and type checkers.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach_stub(__name__, __file__)
