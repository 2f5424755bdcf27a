"""What runs networks: ONNX Runtime sessions and exports (:mod:`.onnx`, a leaf), and :func:`.accelerate.accelerate`,
the one policy for moving an encoder onto ONNX Runtime, used by training and inference alike."""
