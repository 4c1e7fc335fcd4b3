"""mnist-cli: the TensorFlow 2 "Play with MNIST" walk-through as a real command-line tool."""

__version__ = "0.1.0"
