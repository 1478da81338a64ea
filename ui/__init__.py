"""The Gradio UI of HAR Studio, one module per tab over the ``har`` library.

``recognize`` (one video, one model or both), ``test_many`` (a batch of links and uploads), ``compare`` (the
stored results of the models), ``about`` (the model card); ``shared`` holds what the tabs share (the model choices,
the links to the docs, the example clips) and ``serving`` the housekeeping of a running server (settings checked
at start, recognizers loaded, output folders, the cache's size cap). ``app.py`` builds the page and launches it.
"""
