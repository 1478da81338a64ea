"""Inputs that answer a malformed API payload with a message, not a bare error.

Gradio checks a payload against its component before a handler runs: a file that is not ``{"path": ...}`` fails
pydantic's validation, and a number that is not one fails the component's own preprocessing; either reaches an API
client as a bare "AppError" with a traceback in the log. These components say what was wrong instead.
"""

from __future__ import annotations

import gradio as gr
import pydantic

from ui.shared import error


def checked_seconds(component: gr.Number) -> gr.Number:
    """``component`` with a payload that is neither a number nor empty refused naming the input. (The component's
    own ``preprocess`` is wrapped on this instance: a subclass would be a component of its own to Gradio.)"""
    preprocess = component.preprocess

    def checked(payload):
        if payload is not None and (isinstance(payload, bool) or not isinstance(payload, (int, float))):
            raise error(f"{component.label}: {str(payload)[:40]!r} is not a number of seconds.")
        return preprocess(payload)

    component.preprocess = checked
    return component


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
