"""Video in and out: decoding and sampling, ffmpeg, the annotated copy, length limits."""
