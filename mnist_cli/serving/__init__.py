"""`mnist serve`: a loaded model behind an HTTP API (ours and TensorFlow Serving's) and a page to draw digits on."""
