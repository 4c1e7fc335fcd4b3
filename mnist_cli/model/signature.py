"""The exported model's contract, without TensorFlow: its signature, input and outputs.

Every model `mnist train` builds takes uint8 images [N, 28, 28] named `images` and returns
float32 logits [N, classes]; `mnist export` adds the probabilities and the classes beside
them. The SavedModel, the TFLite file, the LiteRT cache, TF Serving's REST and gRPC APIs and
the Open Inference Protocol all describe this one contract, so it is written down once here.
"""

from __future__ import annotations

from mnist_cli.data.registry import COLS, NUM_CLASSES, ROWS

SIGNATURE = "serving_default"  # the signature `mnist export` writes and TF Serving uses by default
INPUT = "images"  # uint8 [N, ROWS, COLS], pixels 0-255, ink bright on a dark ground (as MNIST)
INPUT_SHAPE = (-1, ROWS, COLS)  # -1: any batch size
INPUT_DTYPE = "uint8"
LOGITS = "logits"  # float32 [N, NUM_CLASSES], what the network returns
PROBABILITIES = "probabilities"  # float32 [N, NUM_CLASSES]
CLASSES = "classes"  # int64 [N], the most probable class
OUTPUTS = (LOGITS, PROBABILITIES, CLASSES)  # in the order the exported signature lists them
OUTPUT_SHAPES = {LOGITS: (-1, NUM_CLASSES), PROBABILITIES: (-1, NUM_CLASSES), CLASSES: (-1,)}
OUTPUT_DTYPES = {LOGITS: "float32", PROBABILITIES: "float32", CLASSES: "int64"}

# What `mnist export --format` writes, and the file or folder each is written as by default.
