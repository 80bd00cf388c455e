"""The core's own files: the ``.ug`` bundle, the safetensors reader and writer, atomic outputs, and
recognizing what a path holds. NumPy only: no framework is imported here."""
