"""Shared pieces every layer stands on: errors and exit codes, file writing, the frozen config,
run directories, metrics and pictures, and importing TensorFlow quietly. Nothing here imports
the layers above (data, training, inference, cli)."""
