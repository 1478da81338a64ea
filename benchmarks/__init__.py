"""Measurements of the app and the library (run as scripts), and the harness they share with the tests: the app
launched on a free port (``launcher``) and the corpus of bad inputs (``corpus``)."""
