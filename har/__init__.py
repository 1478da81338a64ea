"""HAR Studio: human action recognition (LRCN and ConvLSTM) on short clips and long videos.

The library never imports gradio: ``app.py`` is a thin UI over it. One module per job:
``video`` decodes and samples, ``data`` indexes and splits, ``models`` builds, ``train`` fits and logs,
``evaluate`` scores, ``infer`` predicts, ``fetch`` downloads, ``dashboard`` turns stored logs into figures.
"""

from har.errors import DatasetError, FetchError, HarError, ModelError, VideoError

__version__ = "0.1.0"

__all__ = ["DatasetError", "FetchError", "HarError", "ModelError", "VideoError", "__version__"]
