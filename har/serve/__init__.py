"""A loaded model and what it answers: runtimes, graph surgery, the ONNX copy, timelines, results."""
