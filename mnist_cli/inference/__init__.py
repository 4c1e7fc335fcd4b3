"""Using a trained model: loading a run, checkpoint or model file, evaluating it, turning
pictures into MNIST-style digits, and exporting it."""
