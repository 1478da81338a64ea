"""Inputs that answer a malformed API payload with a message, not a bare error.

Gradio checks a payload against its component before a handler runs: a file that is not ``{"path": ...}`` fails
pydantic's validation, and a number that is not one fails the component's own preprocessing; either reaches an API
client as a bare "AppError" with a traceback in the log. These components say what was wrong instead.
"""

from __future__ import annotations

import gradio as gr
import pydantic

from ui.shared import error

from gradio.events import Dependency

class Seconds(gr.Number):
    """A number of seconds (or nothing); anything else is refused naming the input."""

    is_template = True  # drawn by the page as the gr.Number it is (Gradio names the front-end part by the class)

    def preprocess(self, payload):
        if payload is not None and (isinstance(payload, bool) or not isinstance(payload, (int, float))):
            raise error(f"{self.label}: {str(payload)[:40]!r} is not a number of seconds.")
        return super().preprocess(payload)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


def checked_files(component: gr.components.Component, what: str) -> gr.components.Component:
    """``component`` (a gr.Video or gr.File) with a payload that is not a file (or a list of files) refused with a
    message naming ``what`` and how to send one. Its API description is unchanged."""
    model = component.data_model
    many = issubclass(model, pydantic.RootModel)

    class Checked(model):
        @classmethod
        def model_validate(cls, obj, *args, **kwargs):
            try:
                return model.model_validate(obj, *args, **kwargs)
            except pydantic.ValidationError:
                kind = "a list of files" if many else "a file"
                raise error(f"{what}: the request's value is not {kind} (send files with gradio_client's "
                            "handle_file(path)).") from None

        @classmethod
        def model_json_schema(cls, *args, **kwargs):
            return model.model_json_schema(*args, **kwargs)

    component.data_model = Checked
    return component