"""Progress bars that read right both live and in a saved notebook.

In a notebook, ``tqdm.auto`` draws a widget. A notebook saved after the run (executed by papermill,
saved from Colab, shown on GitHub) keeps the widget's text form as it was when first displayed:
"0%". The bar here is ``tqdm.auto``'s widget, published under a display id and published again
under that id when it closes, so the saved text is the final state ("100%|...| 146/146 [00:12<00:00]"),
whole (ipywidgets cuts its own text at 110 characters). Outside a notebook it is ``tqdm.auto.tqdm``
itself. Library modules take their bars from here; ``bars_in`` lends them to a library that imports
``tqdm.auto`` itself (CleanVision).

The bundle is built here, not by ``display(widget, display_id=True)``: ipywidgets 7 (Colab's)
displays a widget through ``_ipython_display_``, which publishes without the display id, so the
update on close found no output to replace and published the bar a second time instead (two bars
live, the first saved at "0%"). ipywidgets 8 goes through ``_repr_mimebundle_``, which kept the id.
"""

from __future__ import annotations

import contextlib
import sys

from tqdm.auto import tqdm as _auto

# tqdm.auto has imported tqdm.notebook only when it chose the widget bar.
_notebook = sys.modules.get("tqdm.notebook")

if _notebook is not None and issubclass(_auto, _notebook.tqdm):

    class tqdm(_auto):  # noqa: N801 (a drop-in for tqdm.auto.tqdm)
        """``tqdm.auto.tqdm`` whose displayed output is updated to the final state on close."""

        def __init__(self, *args, **kwargs):
            self._handle = None
            display_here = kwargs.pop("display", True)
            super().__init__(*args, display=False, **kwargs)
            if display_here and not self.disable and self.delay <= 0:
                self._show()

        def display(self, msg=None, pos=None, close=False, bar_style=None, check_delay=True):
            # tqdm shows a delayed bar with a plain display() on its first refresh: show it here.
            if check_delay and self.delay > 0 and not self.displayed and not self.disable:
                self._show()
            super().display(msg, pos, close=close, bar_style=bar_style, check_delay=False)

        def close(self):
            super().close()
            handle, self._handle = getattr(self, "_handle", None), None
            if handle is not None:
                handle.update(self._bundle(), raw=True)  # what a saved notebook keeps

        def _show(self):
            from IPython.display import display

            self._handle = display(self._bundle(), raw=True, display_id=True)
            self.displayed = True

        def _bundle(self) -> dict:
            """The widget's display data: its text (the bar as text) and, while it is open, the
            widget view. A closed widget (``leave=False``) leaves its final line as text."""
            data = {"text/plain": repr(self.container)}
            if self.container.comm is not None:  # open: the view (schema 2.0, as ipywidgets sends)
                view = {"version_major": 2, "version_minor": 0, "model_id": self.container.model_id}
                data["application/vnd.jupyter.widget-view+json"] = view
            return data

else:
    tqdm = _auto


@contextlib.contextmanager
def bars_in(package: str, *, desc_prefix: str = "", **options):
    """Within the block, the modules of ``package`` (already imported) that took ``tqdm.auto``'s
    bar use this module's instead: each bar's ``desc`` after ``desc_prefix``, ``options`` (e.g.
    ``unit``, ``leave``) over the package's own. Restored on exit. Outside a notebook the bars
    stay ``tqdm.auto``'s, with the same descriptions and options."""
    patched = [
        module
        for name, module in list(sys.modules.items())
        if (name == package or name.startswith(package + "."))
        and getattr(module, "tqdm", None) is _auto
    ]

    def bar(*args, **kwargs):
        kwargs = {**kwargs, **options}
        kwargs["desc"] = desc_prefix + (kwargs.get("desc") or "")
        return tqdm(*args, **kwargs)

    try:
        for module in patched:
            module.tqdm = bar
        yield
    finally:
        for module in patched:
            module.tqdm = _auto


__all__ = ["bars_in", "tqdm"]
