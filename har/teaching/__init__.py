"""Teaching a model new actions from a few example clips (``har.teach``, ``python -m har teach``)."""
