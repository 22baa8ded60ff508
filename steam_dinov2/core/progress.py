"""Progress bars that read right both live and in a saved notebook.

In a notebook, ``tqdm.auto`` draws a widget. A notebook saved after the run (executed by papermill,
saved from Colab, shown on GitHub) keeps the widget's text form as it was when first displayed:
"0%". The bar here is ``tqdm.auto``'s, displayed with a display id and shown once more when it
closes, so the saved text is the final state ("100%|...| 146/146 [00:12<00:00]"). Outside a
notebook it is ``tqdm.auto.tqdm`` itself. Library modules take their bars from here.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm as _auto

# tqdm.auto has imported tqdm.notebook only when it chose the widget bar.
_notebook = sys.modules.get("tqdm.notebook")

if _notebook is not None and issubclass(_auto, _notebook.tqdm):

    class tqdm(_auto):  # noqa: N801 (a drop-in for tqdm.auto.tqdm)
        """``tqdm.auto.tqdm`` whose displayed output is updated to the final state on close."""

        def __init__(self, *args, **kwargs):
            display_here = kwargs.pop("display", True)
            super().__init__(*args, display=False, **kwargs)
            self._handle = None
            if display_here and not self.disable and self.delay <= 0:
                from IPython.display import display

                self._handle = display(self.container, display_id=True)
                self.displayed = True

        def close(self):
            super().close()
            handle, self._handle = getattr(self, "_handle", None), None
            if handle is not None:
                handle.update(self.container)  # the text a saved notebook keeps: the final state

else:
    tqdm = _auto

__all__ = ["tqdm"]
